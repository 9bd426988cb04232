"""JSON Schemas of every event type, exported to files so producers in any language can write valid events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.events.base import Event
from streams.events.registry import EVENT_TYPES

__all__ = ["SCHEMA_DIR", "export_schemas", "render_schemas"]

SCHEMA_DIR = Path(__file__).parent / "schemas"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, for every event type (stable output: sorted keys, trailing newline)."""
    out: dict[str, str] = {}
    for name, cls in sorted(EVENT_TYPES.items()):
        schema = cls.model_json_schema()
        schema["$id"] = f"https://affresco.dev/schemas/{name}.v{cls.schema_version}.json"
        schema["x-affresco"] = _metadata(name, cls)
        out[f"{name}.v{cls.schema_version}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def _metadata(name: str, cls: type[Event]) -> dict[str, Any]:
    """What a producer must know beyond the payload: headers, key and the dedupe key."""
    meta: dict[str, Any] = {
        "event_type": name,
        "schema_version": cls.schema_version,
        # The key_field is what `Event.key()` returns; where the record's key is something else
        # (a dead letter keeps the original record's key), `key_field` is null and `key` says what.
        "key_field": None if cls.key_note else cls.key_field,
        "key": cls.key_note or f"The value of {cls.key_field} (UTF-8).",
        "headers": {
            "event_type": f"{name} (exactly; without the header the body's event_type decides)",
            "schema_version": f"{cls.schema_version} (a missing header means this version)",
        },
    }
    if cls.dedupe_key:
        meta["dedupe_key"] = list(cls.dedupe_key)
    return meta


def export_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema to `directory`, removing stale ones; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render_schemas()
    for stale in directory.glob("*.schema.json"):
        if stale.name not in rendered:
            stale.unlink()
    paths = []
    for fname, text in rendered.items():
        path = directory / fname
        path.write_text(text)
        paths.append(path)
    return paths
