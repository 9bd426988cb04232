"""Batch validation: every bad row gets a reason; good rows survive a bad neighbour."""

from __future__ import annotations

import time

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from streams.codec import EventDecoder, Rejection
from streams.events import DriverPing
from streams.events.registry import any_event_adapter

T = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = T + 60_000
GOOD = {"event_time": T, "driver_id": "d-1", "country": "US", "city": "nyc", "zone": "z1", "status": "available"}


def row(**over: object) -> bytes:
    return orjson.dumps({**GOOD, **over})


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b"{not json", "malformed_json", "Invalid JSON"),
        (b"", "malformed_json", "Invalid JSON"),
        (b"[1, 2]", "validation_error", "object"),
        (row(event_time="5"), "validation_error", "event_time"),
        (row(event_time=5), "validation_error", "Input should be an integer from 946684800000"),
        (row(event_time=T + 0.5), "validation_error", "Input should be an integer from"),
        (row(status="sleeping"), "validation_error", "status"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "zone"}), "validation_error", "zone: Field required"),
        (row(extra_field=1), "validation_error", "extra_field"),
        (row(event_type="trip_requested"), "validation_error", "event_type"),
        (row(zone="z" * 2_000_000), "oversized", "exceeds the limit"),
    ],
)
def test_each_kind_of_bad_row_has_a_reason(raw: bytes, reason: str, fragment: str) -> None:
    result = EventDecoder(DriverPing).decode([row(), raw, row(driver_id="d-2")], now_ms=NOW)
    assert [e.key() for e in result.events] == ["d-1", "d-2"]
    assert result.indices == [0, 2]
    [rej] = result.rejected
    assert (rej.index, rej.reason) == (1, reason)
    assert fragment in rej.error
    assert rej.error.startswith("expected a valid driver_ping") or reason == "oversized"


def test_auto_decoder_routes_by_event_type_and_flags_unknown_types() -> None:
    decoder = EventDecoder()
    result = decoder.decode(
        [
            row(event_type="driver_ping"),
            orjson.dumps({"event_type": "teleport", "event_time": T}),
            orjson.dumps({**GOOD, "event_type": "Driver_Ping"}),  # exact names only
            orjson.dumps({**GOOD, "event_type": ""}),
            row(),  # no event_type field: no type at all
        ],
        now_ms=NOW,
    )
    assert isinstance(result.events[0], DriverPing)
    assert [r.reason for r in result.rejected] == ["unknown_event_type"] * 4
    assert "teleport" in result.rejected[0].error
    assert all(r.expected_type is None for r in result.rejected)


def test_decode_one_matches_decode() -> None:
    decoder = EventDecoder(DriverPing)
    assert decoder.decode_one(row()) == decoder.decode([row()]).events[0]  # the wall clock: T is past
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
        row(**typed, event_time=float(T)),
        row(**typed, event_time=T + 0.25),
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


@pytest.mark.parametrize(
    "raw",
    [
        row().replace(str(T).encode(), b"NaN"),
        row().replace(str(T).encode(), b"Infinity"),
        row().replace(str(T).encode(), b"-Infinity"),
        row().replace(str(T).encode(), b"1e400"),
        row().replace(str(T).encode(), b"1" * 400),
        row().replace(b'"z1"', b"NaN"),  # in a string field
        row().replace(b'"z1"', b'"\\ud800"'),  # a lone surrogate
        row().replace(b'"z1"', b'"\xff\xfe"'),  # not UTF-8
        row().replace(b'"z1"', b'"z1", "x": NaN'),  # in an extra field
        row() + b" trailing",
        b'{"event_time": 1767225600000,}',
    ],
)
def test_only_strict_json_is_accepted(raw: bytes) -> None:
    """What strict JSON readers (orjson, jq, Java, Go) refuse is malformed, not merely invalid."""
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    rej = EventDecoder(DriverPing).decode_one(raw, now_ms=NOW)
    assert isinstance(rej, Rejection), raw
    assert rej.reason == "malformed_json", (raw, rej)
    assert "Invalid JSON" in rej.error
    assert rej.expected_type == "driver_ping"


@pytest.mark.parametrize(
    ("token", "expected"),
    [(b"1767225600000.0", T), (b"1.7672256e12", T), (b"17672256000000e-1", T), (b"1767225600000.000", T)],
)
def test_integral_numbers_are_integers(token: bytes, expected: int) -> None:
    got = EventDecoder(DriverPing).decode_one(row().replace(str(T).encode(), token), now_ms=NOW)
    assert isinstance(got, DriverPing) and got.event_time == expected and type(got.event_time) is int


def test_event_times_too_far_ahead_are_future_events() -> None:
    decoder = EventDecoder(DriverPing, max_future_ms=3_600_000)
    limit = NOW + 3_600_000
    at_limit, past = row(event_time=limit), row(event_time=limit + 1)
    assert isinstance(decoder.decode_one(at_limit, now_ms=NOW), DriverPing)  # the limit itself is allowed
    rej = decoder.decode_one(past, now_ms=NOW)
    assert isinstance(rej, Rejection) and rej.reason == "future_event"
    assert rej.error == (
        f"event_time 2026-01-01T01:01:00.001Z ({limit + 1} ms) is more than 3600000 ms ahead of the receiver's "
        f"clock: expected at most 2026-01-01T01:01:00.000Z ({limit} ms)"
    )
    result = decoder.decode([row(), past, at_limit], now_ms=NOW)
    assert result.indices == [0, 2] and [(r.index, r.reason) for r in result.rejected] == [(1, "future_event")]
    # A wider skew lets it through; the wall clock is the default now.
    assert isinstance(EventDecoder(DriverPing, max_future_ms=3_600_001).decode_one(past, now_ms=NOW), DriverPing)
    now = int(time.time() * 1000)
    two_hours = row(event_time=now + 7_200_000)
    assert isinstance(decoder.decode_one(two_hours), Rejection)
    assert decoder.decode([two_hours]).rejected[0].reason == "future_event"
    assert isinstance(decoder.decode_one(row(event_time=now)), DriverPing)


def test_oversized_rows_name_the_expected_type() -> None:
    rej = EventDecoder(DriverPing, max_bytes=10).decode_one(row())
    assert isinstance(rej, Rejection) and (rej.reason, rej.expected_type) == ("oversized", "driver_ping")
