"""GroupEngine: filters, keys, late events, versions, eviction, bad records; values equal the reference."""

from __future__ import annotations

import random
from typing import Any

import pytest

from processors.definitions import FeatureGroup, compile_spec
from processors.engine import EntityState, GroupEngine, GroupState, SourceRow
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


def trip(
    i: int, t: int, zone: str = "z1", km: float = 3.0, surge: float = 1.0, *, partition: int = 0, prior_max: int = -1
) -> SourceRow:
    fields = {
        "event_time": t, "event_type": "trip_requested", "trip_id": f"t{i}", "rider_id": f"r{i % 5}",
        "country": "US", "city": "nyc", "pickup_zone": zone, "dropoff_zone": f"d{i}", "distance_km": km, "surge": surge,
    }  # fmt: skip
    return SourceRow(fields, partition=partition, offset=i, prior_max=prior_max)


def test_values_match_the_reference_on_simulated_events() -> None:
    group = make_group()
    events = [e.__dict__ for e in simulate(4000, seed=3, start_ms=T0) if e.type_name() == "trip_requested"]
    engine = GroupEngine(group)
    group_state = GroupState(partitions=1)
    rows = [SourceRow(e, 0, i) for i, e in enumerate(events)]
    for lo in range(0, len(rows), 333):  # micro-batches
        engine.apply(group_state, rows[lo : lo + 333])
    states = group_state.entities
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
    states = GroupState(partitions=1)
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


def test_late_events_are_judged_by_their_own_partition() -> None:
    group = make_group()
    engine = GroupEngine(group)
    state = GroupState(partitions=2)
    # Partition 0 is an hour ahead of partition 1: that never makes partition 1's events late.
    rows = [
        trip(0, T0 + 60 * MIN, partition=0),
        trip(1, T0 + 54 * MIN, partition=0, prior_max=T0 + 60 * MIN),  # 6 min behind its partition: late
        trip(2, T0 + 56 * MIN, partition=0, prior_max=T0 + 60 * MIN),  # 4 min behind: on time
        trip(3, T0 + 5 * MIN, partition=1),
        trip(4, T0 + 1 * MIN, partition=1, prior_max=T0 + 5 * MIN),  # 4 min behind partition 1: on time
    ]
    result = engine.apply(state, rows)
    assert [(r.row.offset, r.reason, r.step) for r in result.rejected] == [(1, "late_event", "lateness")]
    assert result.accepted == 4 and result.late == 1
    error = result.rejected[0].error
    assert "partition 0" in error and "2026-01-01T00:54:00.000Z" in error and str(group.lateness_ms) in error


def test_the_lateness_boundary_is_inclusive() -> None:
    engine = GroupEngine(make_group())  # allowed lateness 5m
    limit = T0 + 55 * MIN
    rows = [trip(1, limit, prior_max=T0 + 60 * MIN), trip(2, limit - 1, prior_max=T0 + 60 * MIN)]
    result = engine.apply(GroupState(1), rows)
    assert [r.row.offset for r in result.rejected] == [2] and result.accepted == 1


def test_filter_and_null_keys() -> None:
    engine = GroupEngine(make_group(source={"topic": "t", "event_type": "trip_requested", "filter": "distance_km > 5"}))
    result = engine.apply(GroupState(1), [trip(0, T0, km=1.0), trip(1, T0, km=6.0)])
    assert result.filtered == 1 and result.accepted == 1
    group = make_group(key="if_else(distance_km > 5, pickup_zone, None)")
    result = GroupEngine(group).apply(GroupState(1), [trip(0, T0, km=1.0)])
    assert result.rejected[0].reason == "validation_error" and "null" in result.rejected[0].error


def test_old_tiles_are_evicted_and_values_slide() -> None:
    engine = GroupEngine(make_group())
    group_state = GroupState(1)
    engine.apply(group_state, [trip(i, T0 + i * MIN) for i in range(200)])
    engine.finalize_all(group_state)  # the history needs no tile any more
    state = group_state.entities["z1"]
    assert len(state.tiles["n_10m"]) <= 10 and len(state.tiles["km_1h"]) <= 12
    assert engine.values(state, state.u)["n_10m"] == 10
    assert engine.values(state, state.u + 2 * 60 * MIN)["n_10m"] == 0  # nothing in the last 10m


def test_state_bytes_round_trip() -> None:
    engine = GroupEngine(make_group())
    group_state = GroupState(1)
    rnd = random.Random(1)
    engine.apply(group_state, [trip(i, T0 + rnd.randrange(0, 30 * MIN)) for i in range(100)])
    state = group_state.entities["z1"]
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


def test_a_record_that_breaks_a_kernel_is_rejected_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from processors.kernels import tiles

    real = tiles.batch_partials

    def fragile(spec: Any, codes: Any, times: Any, values: Any) -> Any:
        if values is not None and 7.77 in list(values):
            msg = "a kernel bug"
            raise OverflowError(msg)
        return real(spec, codes, times, values)

    monkeypatch.setattr("processors.engine.batch_partials", fragile)
    engine = GroupEngine(make_group())
    state = GroupState(1)
    result = engine.apply(state, [trip(0, T0), trip(1, T0 + MIN, km=7.77), trip(2, T0 + 2 * MIN)])
    [bad] = result.rejected
    assert (bad.row.offset, bad.reason, bad.step) == (1, "processing_error", "aggregate km_1h")
    assert "OverflowError: a kernel bug" in bad.error
    assert result.accepted == 2 and state.entities["z1"].rev == 2
    assert engine.values(state.entities["z1"], T0 + 2 * MIN)["n_10m"] == 2


def test_numbers_beyond_the_rule_are_null_and_huge_sums_encode() -> None:
    group = make_group(
        features=[
            {"name": "per_km", "agg": "mean", "expr": "surge / distance_km", "window": "1h"},
            {"name": "big", "agg": "sum", "expr": "distance_km * 1e9", "window": "1d"},
        ]
    )
    engine = GroupEngine(group)
    state = GroupState(1)
    # surge / 1e-300 is inf: null, skipped by the mean; 500 km * 1e9 is 5e11 per event: micro-units
    # sum beyond 64 bits after ~18 events, which the state bytes must still hold.
    rows = [trip(i, T0 + i, km=1e-300 if i == 0 else 500.0, surge=2.0) for i in range(40)]
    [update] = engine.apply(state, rows).updates
    assert update.values["per_km"] == pytest.approx(2.0 / 500.0)
    assert update.values["big"] == pytest.approx(39 * 5e11)
    back = EntityState.from_bytes(update.state)
    assert engine.values(back, back.u) == update.values
    assert back.tiles == state.entities["z1"].tiles


def test_the_frontier_is_the_last_accepted_offset_per_partition() -> None:
    engine = GroupEngine(make_group())
    state = GroupState(2)
    rows = [trip(5, T0, partition=0), trip(3, T0 + 1, partition=1), trip(9, T0 + 2, partition=0)]
    [update] = engine.apply(state, rows).updates
    assert update.frontier == {0: 9, 1: 3}
    [update] = engine.apply(state, [trip(4, T0 + 3, partition=1)]).updates
    assert update.frontier == {0: 9, 1: 4}


def test_too_long_keys_are_rejected() -> None:
    engine = GroupEngine(make_group(key="concat(pickup_zone, dropoff_zone, trip_id, rider_id)"))
    row = trip(0, T0, zone="z" * 64)
    long_fields = {**row.fields, "dropoff_zone": "d" * 64, "trip_id": "t" * 64, "rider_id": "r" * 64}
    result = engine.apply(GroupState(1), [SourceRow(long_fields, 0, 0), trip(1, T0)])
    assert [(r.reason, r.step) for r in result.rejected] == [("validation_error", "key")]
    assert "256 characters" in result.rejected[0].error and result.accepted == 1
