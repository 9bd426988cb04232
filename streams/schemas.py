"""JSON Schemas of every event type, exported to files so producers in any language can write valid events."""

from __future__ import annotations

import json
from pathlib import Path

from streams.events.registry import EVENT_TYPES

__all__ = ["SCHEMA_DIR", "export_schemas", "render_schemas"]

SCHEMA_DIR = Path(__file__).parent / "schemas"


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, for every event type (stable output: sorted keys, trailing newline)."""
    out: dict[str, str] = {}
    for name, cls in sorted(EVENT_TYPES.items()):
        schema = cls.model_json_schema()
        schema["$id"] = f"https://affresco.dev/schemas/{name}.v{cls.schema_version}.json"
        schema["x-affresco"] = {"event_type": name, "schema_version": cls.schema_version, "key_field": cls.key_field}
        out[f"{name}.v{cls.schema_version}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


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
