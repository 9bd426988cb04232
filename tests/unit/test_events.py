"""Event models, the registry and the JSON Schemas (no server needed)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.events import EVENT_TYPES, DeadLetter, DriverPing, FeatureUpdate, TripCompleted, TripRequested, event_class
from streams.events.base import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS
from streams.events.fields import INT63_MAX
from streams.events.registry import any_event_adapter
from streams.exceptions import UnknownEventTypeError
from streams.producer import event_headers
from streams.schemas import SCHEMA_DIR, render_schemas

T = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def trip(**over: object) -> TripRequested:
    fields: dict[str, object] = {
        "event_time": T,
        "trip_id": "t-1",
        "rider_id": "r-1",
        "country": "US",
        "city": "nyc",
        "pickup_zone": "nyc-01",
        "dropoff_zone": "nyc-02",
        "distance_km": 3.5,
    }
    fields.update(over)
    return TripRequested.model_validate(fields)


def test_key_is_the_entity_field() -> None:
    assert trip(rider_id="r-42").key() == "r-42"
    ping = DriverPing(event_time=T, driver_id="d-7", country="US", city="nyc", zone="z", status="available")
    assert ping.key() == "d-7"


def test_headers_carry_type_and_schema_version() -> None:
    assert dict(event_headers(TripRequested)) == {"event_type": b"trip_requested", "schema_version": b"1"}


def test_json_round_trip_through_the_discriminated_union() -> None:
    event = trip()
    back = any_event_adapter.validate_json(event.model_dump_json())
    assert back == event
    assert isinstance(back, TripRequested)


@given(
    event_time=st.integers(min_value=MIN_EVENT_TIME_MS, max_value=MAX_EVENT_TIME_MS),
    distance=st.floats(min_value=0.01, max_value=500, allow_nan=False),
    values=st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**53), 2**53),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=20),
        ),
        max_size=5,
    ),
)
def test_round_trip_property(event_time: int, distance: float, values: dict[str, object]) -> None:
    t = trip(event_time=event_time, distance_km=distance)
    assert TripRequested.model_validate_json(t.model_dump_json()) == t
    fu = FeatureUpdate(event_time=event_time, group="g", version=1, entity_key="k", values=values)  # type: ignore[arg-type]
    assert FeatureUpdate.model_validate_json(fu.model_dump_json()) == fu


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"event_time": -1}, "event_time"),
        ({"event_time": 1_700_000_000}, "event_time"),  # s, not ms (2001 would be 978e9 ms)
        ({"event_time": MIN_EVENT_TIME_MS - 1}, "event_time"),  # before 2000-01-01
        ({"event_time": MAX_EVENT_TIME_MS + 1}, "event_time"),  # 2100-01-01
        ({"event_time": 1_700_000_000_000_000}, "event_time"),  # µs, not ms
        ({"event_time": "1700000000000"}, "event_time"),  # strict: no strings for ints
        ({"event_time": T + 0.5}, "event_time"),  # an int must be integral
        ({"event_time": True}, "event_time"),  # bools are not ints here
        ({"event_time": float("inf")}, "event_time"),
        ({"distance_km": 0}, "distance_km"),
        ({"distance_km": 0.009}, "distance_km"),
        ({"distance_km": 500.01}, "distance_km"),
        ({"distance_km": float("nan")}, "distance_km"),
        ({"distance_km": float("inf")}, "distance_km"),
        ({"surge": 10.5}, "surge"),
        ({"trip_id": "t" * 65}, "trip_id"),
        ({"trip_id": ""}, "trip_id"),
        ({"country": "USA"}, "country"),
        ({"surprise": 1}, "surprise"),  # extra fields are refused
    ],
)
def test_invalid_fields_are_refused(override: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        trip(**override)
    assert field in str(info.value)


def test_event_class_accepts_several_spellings() -> None:
    assert event_class("trip_requested") is TripRequested
    assert event_class("TripRequested") is TripRequested
    assert event_class("trip-requested") is TripRequested
    with pytest.raises(UnknownEventTypeError, match="unknown event type 'trip_teleported'"):
        event_class("trip_teleported")


def test_every_event_type_has_a_key_field_that_exists() -> None:
    for name, cls in EVENT_TYPES.items():
        assert cls.key_field in cls.model_fields, name
        assert cls.type_name() == name


def test_checked_in_json_schemas_are_current() -> None:
    """`affresco schemas export` must be re-run (and committed) when an event model changes."""
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.schema.json")}
    assert sorted(on_disk) == sorted(rendered), "run `make schemas` and commit streams/schemas/"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run `make schemas`"
    schema = json.loads(rendered["trip_requested.v1.schema.json"])
    assert "rider_id" in schema["required"]
    assert schema["x-affresco"]["key_field"] == "rider_id"


def completed(**over: object) -> TripCompleted:
    fields: dict[str, object] = {
        "event_time": T + 600_000, "trip_id": "t-1", "rider_id": "r-1", "driver_id": "d-1", "country": "US",
        "city": "nyc", "pickup_zone": "nyc-01", "dropoff_zone": "nyc-02", "distance_km": 3.5,
        "requested_at": T, "eta_s": 600.0, "fare": 12.5,
    }  # fmt: skip
    fields.update(over)
    return TripCompleted.model_validate(fields)


@pytest.mark.parametrize(
    "override",
    [
        {"eta_s": 1e308},
        {"eta_s": 0.5},
        {"eta_s": 86_400.001},
        {"fare": 2e13},
        {"fare": -0.01},
        {"distance_km": 1e-300},
        {"requested_at": 0},
        {"requested_at": MAX_EVENT_TIME_MS + 1},
    ],
)
def test_a_trip_is_bounded_like_a_real_one(override: dict[str, object]) -> None:
    # The values of the issue: 1e308 s, 2e13 fare, 1e-300 km (eta_s / distance_km overflowed).
    with pytest.raises(ValidationError) as info:
        completed(**override)
    assert next(iter(override)) in str(info.value)


def test_bounds_are_inclusive_where_the_schema_says_so() -> None:
    assert completed(eta_s=1.0, fare=0.0, distance_km=0.01).eta_s == 1.0
    assert completed(eta_s=86_400.0, fare=1_000_000.0, distance_km=500.0).fare == 1_000_000.0
    assert trip(event_time=MIN_EVENT_TIME_MS).event_time == MIN_EVENT_TIME_MS
    assert trip(event_time=MAX_EVENT_TIME_MS).event_time == MAX_EVENT_TIME_MS


def test_int_fields_take_integral_numbers_however_json_writes_them() -> None:
    # JSON Schema's "integer" is a number with no fractional part: 1.0 and 1e3 are integers.
    base = trip().model_dump()
    for token, value in [(b"1700000000000.0", T), (b"1.7e12", T), (b"17e11", T)]:
        raw = orjson.dumps(base).replace(str(T).encode(), token)
        assert TripRequested.model_validate_json(raw).event_time == value, token
    fu = {"event_time": T, "group": "g", "version": 1, "entity_key": "k", "values": {}}
    raw = orjson.dumps({**fu, "source_offset": 0}).replace(b'"source_offset":0', b'"source_offset":-0.0')
    got = FeatureUpdate.model_validate_json(raw)
    assert got.source_offset == 0 and type(got.source_offset) is int
    assert type(FeatureUpdate.model_validate_json(orjson.dumps({**fu, "version": 2.0})).version) is int
    for bad in [1.5, "1", True, 1e400, INT63_MAX + 1, float(2**63)]:
        with pytest.raises(ValidationError, match="Input should be an integer from 0 to 9223372036854775807"):
            FeatureUpdate.model_validate({**fu, "source_offset": bad})
    # Python-side construction keeps working with ints (and integral floats).
    made = FeatureUpdate(event_time=T, group="g", version=1, entity_key="k", values={}, source_offset=5.0)
    assert made.source_offset == 5


def test_feature_values_keep_their_json_type_and_stay_finite() -> None:
    fu = FeatureUpdate.model_validate_json(
        b'{"event_time": 1700000000000, "group": "g", "version": 1, "entity_key": "k",'
        b' "values": {"n": 5, "x": 5.0, "b": true, "s": "a", "z": null, "big": 100000000000000000000}}'
    )
    assert [type(v) for v in fu.values.values()] == [int, float, bool, str, type(None), float]
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValidationError, match="finite"):
            FeatureUpdate(event_time=T, group="g", version=1, entity_key="k", values={"x": bad})


def test_source_offsets_are_keyed_by_decimal_partition_numbers() -> None:
    fields = {"event_time": T, "group": "g", "version": 1, "entity_key": "k", "values": {}}
    assert FeatureUpdate.model_validate(fields).source_offsets == {}
    ok = FeatureUpdate.model_validate({**fields, "source_offsets": {"0": 5, "12": 7.0}})
    assert ok.source_offsets == {"0": 5, "12": 7}
    for bad in [{"01": 1}, {"a": 1}, {"": 1}, {"0": -1}, {"0": 1.5}]:
        with pytest.raises(ValidationError, match="source_offsets"):
            FeatureUpdate.model_validate({**fields, "source_offsets": bad})


def _walk(schema: object, path: str) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    if isinstance(schema, dict):
        out.append((path, schema))
        for k, v in schema.items():
            out += _walk(v, f"{path}/{k}")
    elif isinstance(schema, list):
        for i, v in enumerate(schema):
            out += _walk(v, f"{path}/{i}")
    return out


def test_every_exported_int_string_and_map_is_bounded() -> None:
    for fname, text in render_schemas().items():
        for path, node in _walk(json.loads(text), fname):
            kind = node.get("type")
            if kind == "integer":
                assert "minimum" in node and "maximum" in node, path
                assert int(node["maximum"]) <= INT63_MAX, path  # type: ignore[call-overload]
            elif kind == "string" and "const" not in node and "enum" not in node and "pattern" not in node:
                assert "maxLength" in node, path
            elif kind == "object" and "/properties/" in path:
                assert "maxProperties" in node, path
                names = node.get("propertyNames")
                assert isinstance(names, dict) and ("maxLength" in names or "pattern" in names), path


def test_exported_schemas_say_what_the_kafka_key_and_the_dedupe_key_are() -> None:
    schemas = {name: json.loads(text) for name, text in render_schemas().items()}
    dead = schemas["dead_letter.v1.schema.json"]["x-affresco"]
    assert dead["key_field"] is None and "original record's key" in dead["key"]
    assert dead["dedupe_key"] == ["source_topic", "source_partition", "source_offset", "group"]
    update = schemas["feature_update.v1.schema.json"]
    assert update["x-affresco"]["dedupe_key"] == ["group", "version", "entity_key", "source_offsets"]
    assert "dedupe key" in update["properties"]["source_offsets"]["description"]
    # Descriptions survive the plain-integer export of JsonInt fields.
    assert "UTC epoch milliseconds" in update["properties"]["event_time"]["description"]
    assert {"output_rejected", "future_event", "unknown_schema_version"} <= set(
        schemas["dead_letter.v1.schema.json"]["properties"]["reason"]["enum"]
    )
    assert DeadLetter.model_fields["group"].default is None
