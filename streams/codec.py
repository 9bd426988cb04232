"""Decoding and validating raw event bytes in batches: good rows become events, bad rows `Rejection`s.

Bad records travel as data, not exceptions: a batch with one malformed row still yields every good
row, and the bad one carries the reason code and error text the dead-letter topic needs.

Input must be strict JSON (RFC 8259 as orjson reads it: no NaN/Infinity, numbers within the double
range, valid UTF-8 without lone surrogates) valid by the event's JSON Schema, and its event time
no more than `max_future_ms` ahead of the receiver's clock (a Kafka broker refuses record
timestamps further ahead, by default 1 h: `log.message.timestamp.after.max.ms`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import CoreConfig, SchemaValidator

from streams.events.base import Event
from streams.events.registry import any_event_adapter

__all__ = ["DEFAULT_MAX_FUTURE_MS", "DecodeResult", "EventDecoder", "Reason", "Rejection", "iso_ms"]

Reason = Literal[
    "malformed_json", "validation_error", "unknown_event_type", "unknown_schema_version", "oversized", "future_event"
]

# The broker's default `log.message.timestamp.after.max.ms`: records further ahead are refused.
DEFAULT_MAX_FUTURE_MS = 3_600_000
_MAX_ERROR_CHARS = 2000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Rejection:
    """Why row `index` of a batch was refused (and which event type was expected, when known)."""

    index: int
    reason: Reason
    error: str
    expected_type: str | None = None


@dataclass
class DecodeResult:
    """`events[i]` came from row `indices[i]` of the batch; `rejected` are the rest."""

    events: list[Event]
    indices: list[int]
    rejected: list[Rejection]


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds: `2026-01-01T00:00:00.000Z`."""
    try:  # integer arithmetic: ms / 1000 as a float can round .001 down to .000999
        return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return f"{ms} ms (out of the datetime range)"


def _json_validator(adapter: TypeAdapter[Event]) -> SchemaValidator:
    """The adapter's own core schema and config, caching only dict keys instead of every short string.

    pydantic's default caches every string of up to 64 characters in a global table; event values
    (ids, zones) are mostly unique, so the lookups and insertions cost ~25% of a validation and save
    nothing. Caching changes which `str` objects come back, never a verdict or a value.
    """
    schema = adapter.core_schema
    # A model's schema carries the config pydantic built the model's validator with; other types
    # (the union of every event) were built with an empty one, so strict JSON is asked for here.
    config: CoreConfig = (schema.get("config") or {}) if schema["type"] == "model" else {"allow_inf_nan": False}
    return SchemaValidator(schema, {**config, "cache_strings": "keys"})


def _not_json(raw: bytes) -> str | None:
    """orjson's complaint about `raw`, or None when it is strict JSON (only called on the error path)."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    return None


def _reason(exc: ValidationError) -> Reason:
    types = {e["type"] for e in exc.errors(include_url=False)}
    if "json_invalid" in types or "json_type" in types:
        return "malformed_json"
    if "union_tag_invalid" in types or "union_tag_not_found" in types:
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

    `decode_one` and `decode` take `now_ms` (default: the wall clock, read once per call) for the
    future-event check: an event time more than `max_future_ms` ahead of it is a `future_event`.

    >>> from streams.events import DriverPing
    >>> result = EventDecoder(DriverPing).decode([b'{"event_time": 1}', b'not json'])
    >>> [r.reason for r in result.rejected]
    ['validation_error', 'malformed_json']
    """

    def __init__(
        self,
        event_type: type[Event] | None = None,
        *,
        max_bytes: int = 1_000_000,
        max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
    ) -> None:
        self.event_type = event_type
        self.expected = event_type.type_name() if event_type else "event with a known event_type"
        self._expected_type = event_type.type_name() if event_type else None
        self.max_bytes = max_bytes
        self.max_future_ms = max_future_ms
        adapter: TypeAdapter[Event] = TypeAdapter(event_type) if event_type else any_event_adapter
        self._validate_json = _json_validator(adapter).validate_json

    def _oversized(self, index: int, raw: bytes) -> Rejection:
        error = f"value of {len(raw)} bytes exceeds the limit of {self.max_bytes}"
        return Rejection(index, "oversized", error, self._expected_type)

    def _invalid(self, index: int, raw: bytes, exc: ValidationError) -> Rejection:
        reason = _reason(exc)
        error = _describe(exc, self.expected)
        if reason != "malformed_json":
            # jiter (pydantic's parser) reads NaN/Infinity and numbers beyond the double range,
            # which strict JSON readers (orjson, jq, Java, Go) refuse: the row is not JSON.
            complaint = _not_json(raw)
            if complaint is not None:
                reason = "malformed_json"
                error = f"expected a valid {self.expected} as strict JSON: Invalid JSON: {complaint}"[:_MAX_ERROR_CHARS]
        return Rejection(index, reason, error, self._expected_type)

    def _future(self, index: int, event: Event, limit_ms: int) -> Rejection:
        t = event.event_time
        error = (
            f"event_time {iso_ms(t)} ({t} ms) is more than {self.max_future_ms} ms ahead of the receiver's clock: "
            f"expected at most {iso_ms(limit_ms)} ({limit_ms} ms)"
        )
        return Rejection(index, "future_event", error, self._expected_type)

    def decode_one(self, raw: bytes, now_ms: int | None = None) -> Event | Rejection:
        """One payload: the event, or a `Rejection` with index 0."""
        if len(raw) > self.max_bytes:
            return self._oversized(0, raw)
        try:
            event = self._validate_json(raw)
        except ValidationError as exc:
            return self._invalid(0, raw, exc)
        limit = (int(time.time() * 1000) if now_ms is None else now_ms) + self.max_future_ms
        if event.event_time > limit:
            return self._future(0, event, limit)
        return event

    def decode(self, rows: Sequence[bytes], now_ms: int | None = None) -> DecodeResult:
        """Every row of a batch: good ones in order, bad ones with their index and reason."""
        events: list[Event] = []
        indices: list[int] = []
        rejected: list[Rejection] = []
        validate = self._validate_json
        size_limit = self.max_bytes
        limit = (int(time.time() * 1000) if now_ms is None else now_ms) + self.max_future_ms
        for i, raw in enumerate(rows):
            if len(raw) > size_limit:
                rejected.append(self._oversized(i, raw))
                continue
            try:
                event = validate(raw)
            except ValidationError as exc:
                rejected.append(self._invalid(i, raw, exc))
                continue
            if event.event_time > limit:
                rejected.append(self._future(i, event, limit))
                continue
            events.append(event)
            indices.append(i)
        return DecodeResult(events, indices, rejected)
