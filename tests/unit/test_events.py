"""Event models, the registry and the JSON Schemas (no server needed)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.events import EVENT_TYPES, DriverPing, FeatureUpdate, TripRequested, event_class
from streams.events.registry import any_event_adapter
from streams.exceptions import UnknownEventTypeError
from streams.producer import event_headers
from streams.schemas import SCHEMA_DIR, render_schemas


def trip(**over: object) -> TripRequested:
    fields: dict[str, object] = {
        "event_time": 1_700_000_000_000,
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
    ping = DriverPing(event_time=1, driver_id="d-7", country="US", city="nyc", zone="z", status="available")
    assert ping.key() == "d-7"


def test_headers_carry_type_and_schema_version() -> None:
    assert dict(event_headers(TripRequested)) == {"event_type": b"trip_requested", "schema_version": b"1"}


def test_json_round_trip_through_the_discriminated_union() -> None:
    event = trip()
    back = any_event_adapter.validate_json(event.model_dump_json())
    assert back == event
    assert isinstance(back, TripRequested)


@given(
    event_time=st.integers(min_value=0, max_value=253_402_300_799_999),
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
        ({"event_time": 1_700_000_000_000_000}, "event_time"),  # µs, not ms
        ({"event_time": "1700000000000"}, "event_time"),  # strict: no strings for ints
        ({"distance_km": 0}, "distance_km"),
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
