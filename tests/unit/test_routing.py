"""Routing records by event type: the header decides, else the body; unknown types are dead letters."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest

from streams.codec import Rejection
from streams.events import DriverPing, TripRequested
from streams.producer import event_headers
from streams.routing import Accepted, RecordRouter, Routed, Skipped
from streams.types import KafkaMessage

T = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = T + 60_000
PING = {"event_time": T, "driver_id": "d-1", "country": "US", "city": "nyc", "zone": "z1", "status": "available"}
TRIP = {
    "event_time": T, "event_type": "trip_requested", "trip_id": "t-1", "rider_id": "r-1", "country": "US",
    "city": "nyc", "pickup_zone": "z1", "dropoff_zone": "z2", "distance_km": 3.5,
}  # fmt: skip

Headers = list[tuple[str, bytes | None]]


@dataclass
class FakeMessage:
    """A consumed record as `streams.types.KafkaMessage` describes it (no broker needed)."""

    value_: bytes | None
    headers_: Headers | None = field(default_factory=list)
    bad_header_key: bytes | None = None  # confluent-kafka raises when a header key is not UTF-8

    def topic(self) -> str | None:
        return "rides.trips"

    def partition(self) -> int | None:
        return 0

    def offset(self) -> int | None:
        return 7

    def key(self) -> bytes | None:
        return b"k"

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> Headers | None:
        if self.bad_header_key is not None:
            codec, why = "utf-8", "invalid start byte"
            raise UnicodeDecodeError(codec, self.bad_header_key, 0, 1, why)
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, T)


def msg(body: object, headers: Headers | None = None, **kw: object) -> KafkaMessage:
    value = body if isinstance(body, bytes) else orjson.dumps(body)
    return FakeMessage(value, headers, **kw)  # type: ignore[arg-type]


PING_HEADERS: Headers = list(event_headers(DriverPing))
ROUTER = RecordRouter([DriverPing], max_bytes=10_000, max_future_ms=3_600_000)


def route(m: KafkaMessage) -> Routed:
    return ROUTER.route(m, NOW)


def rejected(r: Routed) -> tuple[str, str]:
    assert isinstance(r, Rejection), r
    return r.reason, r.error


def test_the_header_decides_and_the_wanted_type_is_decoded() -> None:
    r = route(msg(PING, PING_HEADERS))
    assert isinstance(r, Accepted) and r.type_name == "driver_ping"
    assert isinstance(r.event, DriverPing) and r.event.driver_id == "d-1"
    # The body's own event_type agrees with the header: fine too.
    assert isinstance(route(msg({**PING, "event_type": "driver_ping"}, PING_HEADERS)), Accepted)


def test_known_types_no_reader_wants_are_skipped_not_dead_lettered() -> None:
    r = route(msg(TRIP, list(event_headers(TripRequested))))
    assert r == Skipped("trip_requested")
    assert route(msg(TRIP)) == Skipped("trip_requested")  # by the body's event_type
    # Skipped types are not validated, nor their schema_version looked at.
    assert route(msg(b"not json", [("event_type", b"trip_requested"), ("schema_version", b"9")])) == Skipped(
        "trip_requested"
    )


@pytest.mark.parametrize("headers", [[], None, [("event_type", None)], [("other", b"x")]])
def test_without_an_event_type_header_the_body_decides(headers: Headers | None) -> None:
    r = route(msg({**PING, "event_type": "driver_ping"}, headers))
    assert isinstance(r, Accepted) and r.type_name == "driver_ping"
    assert route(msg(TRIP, headers)) == Skipped("trip_requested")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (PING, "no event_type header and no event_type field"),
        ({**PING, "event_type": None}, "no event_type header and no event_type field"),
        ({**PING, "event_type": "bogus"}, "unknown event_type field 'bogus'"),
        ({**PING, "event_type": "Driver_Ping"}, "unknown event_type field 'Driver_Ping'"),
        ({**PING, "event_type": ""}, "unknown event_type field ''"),
        ({**PING, "event_type": 5}, "unknown event_type field 5"),
    ],
)
def test_a_body_without_a_known_type_is_an_unknown_event_type(body: object, fragment: str) -> None:
    reason, error = rejected(route(msg(body)))
    assert reason == "unknown_event_type" and fragment in error
    assert "expected one of: alert, dead_letter" in error


@pytest.mark.parametrize("value", [b"bogus", b"Trip_Requested", b"TripRequested", b"", b"driver_ping "])
def test_unknown_header_types_are_dead_lettered_exact_names_only(value: bytes) -> None:
    reason, error = rejected(route(msg(PING, [("event_type", value)])))
    assert reason == "unknown_event_type"
    assert f"unknown event_type header {value.decode()!r}" in error


def test_header_and_body_disagreeing_is_a_validation_error() -> None:
    r = route(msg({**PING, "event_type": "trip_requested"}, PING_HEADERS))
    reason, error = rejected(r)
    assert reason == "validation_error" and "event_type" in error
    assert isinstance(r, Rejection) and r.expected_type == "driver_ping"


def test_header_keys_and_type_values_must_be_utf8() -> None:
    reason, error = rejected(route(FakeMessage(orjson.dumps(PING), bad_header_key=b"\xffkey")))
    assert reason == "validation_error"
    assert "expected UTF-8 header keys, got header key b'\\xffkey'" in error
    reason, error = rejected(route(msg(PING, [("event_type", b"\xff\xfe")])))
    assert reason == "validation_error" and "expected a UTF-8 event_type header, got b'\\xff\\xfe'" in error
    # Other headers' values are opaque bytes (tracing headers may be binary).
    assert isinstance(route(msg(PING, [*PING_HEADERS, ("trace", b"\xff")])), Accepted)


@pytest.mark.parametrize("version", [b"2", b"abc", b"", b"\xff", b"1 ", b"01"])
def test_a_schema_version_header_must_be_the_types_version(version: bytes) -> None:
    r = route(msg(PING, [("event_type", b"driver_ping"), ("schema_version", version)]))
    reason, error = rejected(r)
    assert reason == "unknown_schema_version"
    assert "schema_version header: expected 1 for driver_ping (or no header)" in error
    assert isinstance(r, Rejection) and r.expected_type == "driver_ping"


def test_a_missing_schema_version_header_means_the_current_version() -> None:
    assert isinstance(route(msg(PING, [("event_type", b"driver_ping")])), Accepted)
    assert isinstance(route(msg(PING, [("event_type", b"driver_ping"), ("schema_version", b"1")])), Accepted)


def test_headers_as_a_dict_or_str_values_are_understood() -> None:
    fake = FakeMessage(orjson.dumps(PING))
    fake.headers = lambda: {"event_type": "driver_ping", "schema_version": "1"}  # type: ignore[assignment,method-assign,return-value]
    assert isinstance(route(fake), Accepted)


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"{not json", PING_HEADERS, "malformed_json"),
        (b"{not json", [], "malformed_json"),
        (b"[1, 2]", [], "validation_error"),
        (b"[1, 2]", PING_HEADERS, "validation_error"),
        (orjson.dumps({**PING, "zone": "z" * 20_000}), PING_HEADERS, "oversized"),
        (orjson.dumps({**PING, "zone": "z" * 20_000, "event_type": "driver_ping"}), [], "oversized"),
        (orjson.dumps({**PING, "event_time": NOW + 3_600_001}), PING_HEADERS, "future_event"),
        (orjson.dumps(PING).replace(str(T).encode(), b"NaN"), PING_HEADERS, "malformed_json"),
        (orjson.dumps({**PING, "status": "flying"}), PING_HEADERS, "validation_error"),
        (None, PING_HEADERS, "malformed_json"),  # a tombstone is no event
    ],
)
def test_the_decoder_judges_the_body_of_a_wanted_type(value: bytes | None, headers: Headers, reason: str) -> None:
    got, _ = rejected(ROUTER.route(FakeMessage(value, headers), NOW))
    assert got == reason


def test_future_events_depend_on_the_now_given() -> None:
    m = msg({**PING, "event_time": NOW + 3_600_001}, PING_HEADERS)
    assert isinstance(ROUTER.route(m, NOW), Rejection)
    assert isinstance(ROUTER.route(m, NOW + 1), Accepted)


def test_a_router_wants_registered_types_only() -> None:
    class NotRegistered(DriverPing):
        pass

    with pytest.raises(ValueError, match="expected registered event types"):
        RecordRouter([NotRegistered], max_bytes=10, max_future_ms=0)


def test_the_default_limits_are_the_brokers() -> None:
    router = RecordRouter([DriverPing])
    assert isinstance(router.route(msg({**PING, "event_time": NOW + 3_600_000}, PING_HEADERS), NOW), Accepted)
