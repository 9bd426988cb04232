"""Batch validation: every bad row gets a reason; good rows survive a bad neighbour."""

from __future__ import annotations

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from streams.codec import EventDecoder, Rejection
from streams.events import DriverPing
from streams.events.registry import any_event_adapter

GOOD = {"event_time": 5, "driver_id": "d-1", "country": "US", "city": "nyc", "zone": "z1", "status": "available"}


def row(**over: object) -> bytes:
    return orjson.dumps({**GOOD, **over})


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b"{not json", "malformed_json", "Invalid JSON"),
        (b"", "malformed_json", "Invalid JSON"),
        (b"[1, 2]", "validation_error", "object"),
        (row(event_time="5"), "validation_error", "event_time"),
        (row(status="sleeping"), "validation_error", "status"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "zone"}), "validation_error", "zone: Field required"),
        (row(extra_field=1), "validation_error", "extra_field"),
        (row(event_type="trip_requested"), "validation_error", "event_type"),
        (row(zone="z" * 2_000_000), "oversized", "exceeds the limit"),
    ],
)
def test_each_kind_of_bad_row_has_a_reason(raw: bytes, reason: str, fragment: str) -> None:
    result = EventDecoder(DriverPing).decode([row(), raw, row(driver_id="d-2")])
    assert [e.key() for e in result.events] == ["d-1", "d-2"]
    assert result.indices == [0, 2]
    [rej] = result.rejected
    assert (rej.index, rej.reason) == (1, reason)
    assert fragment in rej.error
    assert rej.error.startswith("expected a valid driver_ping") or reason == "oversized"


def test_auto_decoder_routes_by_event_type_and_flags_unknown_types() -> None:
    decoder = EventDecoder()
    result = decoder.decode([row(event_type="driver_ping"), orjson.dumps({"event_type": "teleport", "event_time": 1})])
    assert isinstance(result.events[0], DriverPing)
    assert result.rejected[0].reason == "unknown_event_type"
    assert "teleport" in result.rejected[0].error


def test_decode_one_matches_decode() -> None:
    decoder = EventDecoder(DriverPing)
    assert decoder.decode_one(row()) == decoder.decode([row()]).events[0]
    rej = decoder.decode_one(b"nope")
    assert not isinstance(rej, DriverPing)
    assert rej.reason == "malformed_json"


@pytest.mark.parametrize("event_type", [DriverPing, None])
def test_verdicts_and_values_equal_the_pydantic_adapters(event_type: type[DriverPing] | None) -> None:
    # The decoder builds its own validator (to cache fewer strings) from the adapter's core schema.
    adapter = TypeAdapter(event_type) if event_type else any_event_adapter
    decoder = EventDecoder(event_type)
    typed = {"event_type": "driver_ping"}
    payloads = [
        row(**typed),
        row(**typed, zone="z" * 64),
        row(**typed, zone="z" * 65),  # past the length pydantic would cache
        row(**typed, zone=""),
        row(**typed, country="USA"),
        row(**typed, event_time=-1),
        row(**typed, event_time=1.0),
        row(**typed, extra=1),
        row(event_type="trip_requested"),
        row(event_type="teleport"),
        b'{"event_time": 5, "event_time": 6}',
        b"[]",
        b"null",
        b"{",
    ]
    for raw in payloads:
        try:
            expected: object = adapter.validate_json(raw)
        except ValidationError as exc:
            expected = [(e["type"], e["loc"]) for e in exc.errors()]
        got = decoder.decode_one(raw)
        if isinstance(got, Rejection):
            try:
                decoder._validate_json(raw)
            except ValidationError as exc:
                assert [(e["type"], e["loc"]) for e in exc.errors()] == expected, raw
        else:
            assert got == expected, raw
            assert type(got) is type(expected)
