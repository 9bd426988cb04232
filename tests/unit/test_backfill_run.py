"""Backfill's final values for `load_online`: an entity's last update, or recomputed from its state."""

from __future__ import annotations

from backfill.run import _final
from processors.engine import GroupEngine, GroupState
from tests.unit.test_engine import MIN, T0, make_group, trip


def test_the_last_update_of_an_unchanged_state_equals_the_recomputed_values() -> None:
    engine = GroupEngine(make_group())
    group_state = GroupState(1)
    first = engine.apply(group_state, [trip(i, T0 + i * MIN, zone=f"z{i % 3}") for i in range(30)])
    second = engine.apply(group_state, [trip(100, T0 + 40 * MIN, zone="z0", km=9.0)])
    last = {u.entity: u for u in first.updates + second.updates}
    for entity, state in group_state.entities.items():
        recomputed = _final(engine, entity, state)
        reused = _final(engine, entity, state, last[entity])
        assert reused is last[entity]
        assert (reused.event_time, reused.revision, reused.values, reused.state) == (
            recomputed.event_time, recomputed.revision, recomputed.values, recomputed.state,
        )  # fmt: skip


def test_a_stale_update_is_not_reused() -> None:
    engine = GroupEngine(make_group())
    group_state = GroupState(1)
    [stale] = engine.apply(group_state, [trip(1, T0)]).updates
    engine.apply(group_state, [trip(2, T0 + MIN, km=7.0)])
    final = _final(engine, "z1", group_state.entities["z1"], stale)
    assert final is not stale and final.revision == 2
    assert final.values == engine.values(group_state.entities["z1"], T0 + MIN)
