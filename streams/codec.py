"""Decoding and validating raw event bytes in batches: good rows become events, bad rows `Rejection`s.

Bad records travel as data, not exceptions: a batch with one malformed row still yields every good
row, and the bad one carries the reason code and error text the dead-letter topic needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaValidator

from streams.events.base import Event
from streams.events.registry import any_event_adapter

__all__ = ["DecodeResult", "EventDecoder", "Reason", "Rejection"]

Reason = Literal["malformed_json", "validation_error", "unknown_event_type", "oversized"]

_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Rejection:
    """Why row `index` of a batch was refused."""

    index: int
    reason: Reason
    error: str


@dataclass
class DecodeResult:
    """`events[i]` came from row `indices[i]` of the batch; `rejected` are the rest."""

    events: list[Event]
    indices: list[int]
    rejected: list[Rejection]


def _json_validator(adapter: TypeAdapter[Event]) -> SchemaValidator:
    """The adapter's own core schema and config, caching only dict keys instead of every short string.

    pydantic's default caches every string of up to 64 characters in a global table; event values
    (ids, zones) are mostly unique, so the lookups and insertions cost ~25% of a validation and save
    nothing. Caching changes which `str` objects come back, never a verdict or a value.
    """
    schema = adapter.core_schema
    # A model's schema carries the config pydantic built the model's validator with; other types
    # (the union of every event) were built with an empty one.
    config = (schema.get("config") or {}) if schema["type"] == "model" else {}
    return SchemaValidator(schema, {**config, "cache_strings": "keys"})


def _reason(exc: ValidationError) -> Reason:
    types = {e["type"] for e in exc.errors(include_url=False)}
    if "json_invalid" in types or "json_type" in types:
        return "malformed_json"
    if "union_tag_invalid" in types:
        return "unknown_event_type"
    return "validation_error"


def _describe(exc: ValidationError, expected: str) -> str:
    parts = []
    for e in exc.errors(include_url=False, include_context=False)[:10]:
        where = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] in ("missing", "union_tag_not_found"):
            parts.append(f"{where}: {e['msg']}")
            continue
        got = repr(e.get("input"))
        if len(got) > 80:
            got = got[:77] + "..."
        parts.append(f"{where}: {e['msg']}, got {got}")
    text = f"expected a valid {expected}: " + "; ".join(parts)
    return text[:_MAX_ERROR_CHARS]


class EventDecoder:
    """Validate JSON payloads as one event type, or as any type named by their `event_type` field.

    >>> from streams.events import DriverPing
    >>> result = EventDecoder(DriverPing).decode([b'{"event_time": 1}', b'not json'])
    >>> [r.reason for r in result.rejected]
    ['validation_error', 'malformed_json']
    """

    def __init__(self, event_type: type[Event] | None = None, *, max_bytes: int = 1_000_000) -> None:
        self.event_type = event_type
        self.expected = event_type.type_name() if event_type else "event with a known event_type"
        self.max_bytes = max_bytes
        adapter: TypeAdapter[Event] = TypeAdapter(event_type) if event_type else any_event_adapter
        self._validate_json = _json_validator(adapter).validate_json

    def decode_one(self, raw: bytes) -> Event | Rejection:
        """One payload: the event, or a `Rejection` with index 0."""
        if len(raw) > self.max_bytes:
            return Rejection(0, "oversized", f"value of {len(raw)} bytes exceeds the limit of {self.max_bytes}")
        try:
            return self._validate_json(raw)
        except ValidationError as exc:
            return Rejection(0, _reason(exc), _describe(exc, self.expected))

    def decode(self, rows: Sequence[bytes]) -> DecodeResult:
        """Every row of a batch: good ones in order, bad ones with their index and reason."""
        events: list[Event] = []
        indices: list[int] = []
        rejected: list[Rejection] = []
        validate = self._validate_json
        limit = self.max_bytes
        for i, raw in enumerate(rows):
            if len(raw) > limit:
                rejected.append(Rejection(i, "oversized", f"value of {len(raw)} bytes exceeds the limit of {limit}"))
                continue
            try:
                events.append(validate(raw))
                indices.append(i)
            except ValidationError as exc:
                rejected.append(Rejection(i, _reason(exc), _describe(exc, self.expected)))
        return DecodeResult(events, indices, rejected)
