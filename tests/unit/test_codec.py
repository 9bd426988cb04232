"""Batch validation: every bad row gets a reason; good rows survive a bad neighbour."""

from __future__ import annotations

import orjson
import pytest

from streams.codec import EventDecoder
from streams.events import DriverPing

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
