"""GroupEngine: filters, keys, late events, versions, eviction; values equal the brute-force reference."""

from __future__ import annotations

import random
from typing import Any

import pytest

from processors.definitions import FeatureGroup, compile_spec
from processors.engine import EntityState, GroupEngine, SourceRow, Watermark
from streams.sim import simulate
from tests.reference import group_values_as_of

MIN = 60_000
T0 = 1_767_225_600_000


def make_group(**over: Any) -> FeatureGroup:
    doc: dict[str, Any] = {
        "group": "zone_demand",
        "version": 1,
        "owner": "t",
        "description": "t",
        "entity": "zone",
        "key": "pickup_zone",
        "source": {"topic": "rides.trips", "event_type": "trip_requested"},
        "allowed_lateness": "5m",
        "features": [
            {"name": "n_10m", "agg": "count", "window": "10m"},
            {"name": "km_1h", "agg": "mean", "expr": "distance_km", "window": "1h"},
            {"name": "surge_max_1h", "agg": "max", "expr": "surge", "window": "1h"},
            {"name": "riders_1h", "agg": "approx_distinct", "expr": "rider_id", "window": "1h"},
            {"name": "last_dropoff", "agg": "last", "expr": "dropoff_zone", "window": "1d"},
            {"name": "far", "expr": "distance_km > 8"},
        ],
    }
    doc.update(over)
    group, problems = compile_spec(doc, "test")
    assert group is not None, problems
    return group


def trip(i: int, t: int, zone: str = "z1", km: float = 3.0, surge: float = 1.0) -> SourceRow:
    fields = {
        "event_time": t, "event_type": "trip_requested", "trip_id": f"t{i}", "rider_id": f"r{i % 5}",
        "country": "US", "city": "nyc", "pickup_zone": zone, "dropoff_zone": f"d{i}", "distance_km": km, "surge": surge,
    }  # fmt: skip
    return SourceRow(fields, partition=0, offset=i)


def test_values_match_the_reference_on_simulated_events() -> None:
    group = make_group()
    events = [e.__dict__ for e in simulate(4000, seed=3, start_ms=T0) if e.type_name() == "trip_requested"]
    engine = GroupEngine(group)
    states: dict[str, EntityState] = {}
    rows = [SourceRow(e, 0, i) for i, e in enumerate(events)]
    for lo in range(0, len(rows), 333):  # micro-batches
        engine.apply(states, rows[lo : lo + 333])
    expected_at_u: dict[str, dict[str, Any]] = {}
    for entity, state in states.items():
        expected_at_u[entity] = group_values_as_of(group, events, state.u)[entity]
        got = engine.values(state, state.u)
        assert got.keys() == expected_at_u[entity].keys()
        for name, want in expected_at_u[entity].items():
            assert got[name] == (pytest.approx(want) if isinstance(want, float) else want), (entity, name)
    assert len(states) > 20


def test_one_update_per_touched_entity_with_growing_versions() -> None:
    engine = GroupEngine(make_group())
    states: dict[str, EntityState] = {}
    r1 = engine.apply(states, [trip(0, T0), trip(1, T0 + MIN), trip(2, T0 + 2 * MIN, zone="z2")])
    assert sorted((u.entity, u.event_time, u.revision) for u in r1.updates) == [
        ("z1", T0 + MIN, 2),
        ("z2", T0 + 2 * MIN, 1),
    ]
    z1 = next(u for u in r1.updates if u.entity == "z1")
    assert z1.values["n_10m"] == 2 and z1.values["last_dropoff"] == "d1" and z1.offset == 1
    # An out-of-order (but not late) event: same u, higher revision, value includes it.
    r2 = engine.apply(states, [trip(3, T0 + 30_000, km=9.0)])
    [u] = r2.updates
    assert (u.event_time, u.revision) == (T0 + MIN, 3)
    assert u.values["n_10m"] == 3 and u.values["far"] is False  # row feature: the latest event's value
    assert u.values["km_1h"] == pytest.approx(5.0)


def test_late_events_are_rejected_against_the_watermark() -> None:
    group = make_group()
    engine = GroupEngine(group)
    wm = Watermark(partitions=2)
    assert wm.value(group.lateness_ms) is None  # not every partition seen: nothing is late
    wm.advance({0: T0 + 60 * MIN})
    assert wm.value(group.lateness_ms) is None
    wm.advance({1: T0 + 30 * MIN})
    assert wm.value(group.lateness_ms) == T0 + 25 * MIN  # the slowest partition minus 5m
    states: dict[str, EntityState] = {}
    result = engine.apply(states, [trip(0, T0 + 24 * MIN), trip(1, T0 + 26 * MIN)], wm.value(group.lateness_ms))
    assert [r.reason for r in result.rejected] == ["late_event"]
    assert "watermark" in result.rejected[0].error
    assert result.accepted == 1


def test_filter_and_null_keys() -> None:
    engine = GroupEngine(make_group(source={"topic": "t", "event_type": "trip_requested", "filter": "distance_km > 5"}))
    states: dict[str, EntityState] = {}
    result = engine.apply(states, [trip(0, T0, km=1.0), trip(1, T0, km=6.0)])
    assert result.filtered == 1 and result.accepted == 1
    group = make_group(key="if_else(distance_km > 5, pickup_zone, None)")
    result = GroupEngine(group).apply({}, [trip(0, T0, km=1.0)])
    assert result.rejected[0].reason == "validation_error" and "null" in result.rejected[0].error


def test_old_tiles_are_evicted_and_values_slide() -> None:
    engine = GroupEngine(make_group())
    states: dict[str, EntityState] = {}
    engine.apply(states, [trip(i, T0 + i * MIN) for i in range(200)])
    state = states["z1"]
    assert len(state.tiles["n_10m"]) <= 10 and len(state.tiles["km_1h"]) <= 12
    assert engine.values(state, state.u)["n_10m"] == 10
    assert engine.values(state, state.u + 2 * 60 * MIN)["n_10m"] == 0  # nothing in the last 10m


def test_state_bytes_round_trip() -> None:
    engine = GroupEngine(make_group())
    states: dict[str, EntityState] = {}
    rnd = random.Random(1)
    engine.apply(states, [trip(i, T0 + rnd.randrange(0, 30 * MIN)) for i in range(100)])
    state = states["z1"]
    back = EntityState.from_bytes(state.to_bytes())
    assert engine.values(back, state.u) == engine.values(state, state.u)
    assert (back.u, back.rev) == (state.u, state.rev)


@pytest.mark.parametrize("broken", [False, True])
def test_keyed_by_columns_equals_keyed_row_by_row(broken: bool) -> None:
    group = make_group(
        key="if_else(distance_km > 9, None, pickup_zone)",
        source={"topic": "t", "event_type": "trip_requested", "filter": "distance_km > 2"},
    )
    engine = GroupEngine(group)
    rows = [trip(i, T0 + i, zone=f"z{i % 3}", km=float(i % 12)) for i in range(60)]
    if broken:  # a value breaking the schema: the column path gives up, the row path names the row
        rows[17] = SourceRow({**rows[17].fields, "distance_km": "far"}, 0, 17)
    by_columns, by_rows = engine.keyed(rows), engine._keyed_rows(rows)
    assert by_columns.rows == by_rows.rows and by_columns.entities == by_rows.entities
    assert by_columns.filtered == by_rows.filtered > 0
    assert [(r.row.offset, r.reason) for r in by_columns.rejected] == [
        (r.row.offset, r.reason) for r in by_rows.rejected
    ]
    assert {r.reason for r in by_columns.rejected} == (
        {"validation_error", "processing_error"} if broken else {"validation_error"}
    )
    assert by_columns.column("distance_km") == [r.fields["distance_km"] for r in by_rows.rows]
