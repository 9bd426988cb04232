"""Which event type a Kafka record is, and whether this reader wants it: one rule for every reader.

The rule (the stream processor and backfill route every record through it):

1. The `event_type` header decides, by exact name (`EVENT_TYPES`; `Trip_Requested` or an empty
   value are unknown types). Without one (absent, or a null value), the body's `event_type` field
   does (the body is parsed for that only then). Header and body disagreeing is a
   `validation_error`: the type's model refuses the body's `event_type`.
2. An unknown type is dead-lettered as `unknown_event_type`; a known type no reader wants is
   skipped (another reader's business), not dead-lettered.
3. A `schema_version` header must be the type's version (`unknown_schema_version` otherwise, also
   for a non-UTF-8 value); a missing one means the current version.
4. A header key that is not UTF-8, or an `event_type` header value that is not, is a
   `validation_error` naming the header. (Other headers' values are opaque bytes to Kafka and
   are not looked at: tracing headers may be binary.)
5. The wanted type's `EventDecoder` then validates the body (`malformed_json`, `validation_error`,
   `oversized`, `future_event`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from streams.codec import DEFAULT_MAX_FUTURE_MS, EventDecoder, Rejection
from streams.consumer import HeadersError, message_headers
from streams.events.base import Event
from streams.events.registry import EVENT_TYPES
from streams.types import KafkaMessage

__all__ = ["Accepted", "RecordRouter", "Routed", "Skipped"]


@dataclass(slots=True)
class Accepted:
    """A record of a wanted type that passed validation."""

    event: Event
    type_name: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record of a known type that no reader of this router wants."""

    type_name: str


Routed = Accepted | Skipped | Rejection


@dataclass(frozen=True, slots=True)
class _Route:
    """What to do with one known type: its decoder when wanted, else its shared `Skipped`."""

    name: str
    version: bytes
    decoder: EventDecoder | None
    skipped: Skipped


def _known() -> str:
    return ", ".join(sorted(EVENT_TYPES))


def _same_version(version: bytes | str, expected: bytes) -> bool:
    # Consumed records carry bytes; a dict of headers or a test double may carry str.
    return isinstance(version, str) and version.encode("utf-8", "surrogateescape") == expected


def _shown(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


class RecordRouter:
    """Route Kafka records to the decoder of their event type, or say why not.

    >>> from streams.events import DriverPing
    >>> router = RecordRouter([DriverPing], max_bytes=1_000_000, max_future_ms=3_600_000)
    """

    def __init__(
        self,
        wanted: Iterable[type[Event]],
        *,
        max_bytes: int = 1_000_000,
        max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
    ) -> None:
        wanted = list(wanted)
        unknown = [cls.__name__ for cls in wanted if EVENT_TYPES.get(cls.type_name()) is not cls]
        if unknown:
            msg = f"RecordRouter: expected registered event types, got {unknown}; known: {_known()}"
            raise ValueError(msg)
        wanted_names = {cls.type_name() for cls in wanted}
        self.max_bytes = max_bytes
        # Built once: `route` runs per record. Keys are the header bytes as they arrive.
        self._routes: dict[bytes | str, _Route] = {}
        self._by_name: dict[str, _Route] = {}
        for name, cls in EVENT_TYPES.items():
            decoder = (
                EventDecoder(cls, max_bytes=max_bytes, max_future_ms=max_future_ms) if name in wanted_names else None
            )
            route = _Route(name, str(cls.schema_version).encode(), decoder, Skipped(name))
            self._routes[name.encode()] = route
            self._by_name[name] = route

    def route(self, message: KafkaMessage, now_ms: int) -> Routed:
        """The record's event (`Accepted`), a `Skipped` type, or the `Rejection` for the DLQ."""
        # Runs per record of every topic read: the common case (bytes headers, a known type) takes
        # one dict lookup; anything else goes through the slow paths below.
        try:
            headers: Any = message_headers(message)
        except HeadersError as exc:
            return Rejection(0, "validation_error", str(exc))
        etype: bytes | str | None = None
        version: bytes | str | None = None
        if headers:
            for k, v in headers.items() if type(headers) is dict else headers:
                if k == "event_type":
                    if etype is None:
                        etype = v
                elif k == "schema_version" and version is None:
                    version = v
        route: _Route | Rejection | None
        if etype is None:
            route = self._from_body(message.value() or b"")
        else:
            route = self._routes.get(etype)  # a str finds nothing: the slow path handles it
            if route is None:
                route = self._from_header(etype)
        if isinstance(route, Rejection):
            return route
        decoder = route.decoder
        if decoder is None:
            return route.skipped
        if version is not None and version != route.version and not _same_version(version, route.version):
            return self._bad_version(route, version)
        decoded = decoder.decode_one(message.value() or b"", now_ms)
        if isinstance(decoded, Rejection):
            return decoded
        return Accepted(decoded, route.name)

    def _from_header(self, etype: bytes | str) -> _Route | Rejection:
        raw = etype.encode("utf-8", "surrogateescape") if isinstance(etype, str) else etype
        route = self._routes.get(raw)
        if route is not None:
            return route
        try:
            raw.decode()
        except UnicodeDecodeError:
            return Rejection(0, "validation_error", f"expected a UTF-8 event_type header, got {_shown(raw)}")
        return Rejection(
            0, "unknown_event_type", f"unknown event_type header {raw.decode()!r}; expected one of: {_known()}"
        )

    def _from_body(self, value: bytes) -> _Route | Rejection:
        # No header: the body names its type. Parsed here only for that; the decoder validates it.
        if len(value) > self.max_bytes:
            error = f"value of {len(value)} bytes exceeds the limit of {self.max_bytes}"
            return Rejection(0, "oversized", error)
        try:
            body = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return Rejection(0, "malformed_json", f"expected a JSON object naming its event_type: Invalid JSON: {exc}")
        if not isinstance(body, dict):
            return Rejection(0, "validation_error", f"expected a JSON object, got {type(body).__name__}")
        name = body.get("event_type")
        if name is None:
            return Rejection(
                0, "unknown_event_type", f"no event_type header and no event_type field; expected one of: {_known()}"
            )
        route = self._by_name.get(name) if isinstance(name, str) else None
        if route is None:
            error = f"unknown event_type field {_shown(name)}; expected one of: {_known()}"
            return Rejection(0, "unknown_event_type", error)
        return route

    def _bad_version(self, route: _Route, version: bytes | str) -> Rejection:
        error = (
            f"schema_version header: expected {route.version.decode()} for {route.name} (or no header), "
            f"got {_shown(version)}"
        )
        return Rejection(0, "unknown_schema_version", error, route.name)
