"""The offline history and lateness: whatever order partitions are read in, and however the reads are
cut into batches, the late events are exactly those of the per-partition definition, and every
history row equals the definition's value as of its time (tests/reference.py)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.engine import HOUR_MS, GroupEngine, GroupState, HistoryRow, SourceRow
from processors.progress import PriorMax
from tests.reference import group_values_as_of
from tests.unit.test_engine import make_group

MIN = 60_000
T0 = 1_767_225_600_000
LATENESS = 5 * MIN

Event = tuple[int, int, dict[str, Any]]  # partition, offset, fields


@st.composite
def logs(draw: st.DrawFn) -> list[Event]:
    """2-3 partitions of trip requests over a few hours, each mostly in order, some out of order, some late."""
    events: list[Event] = []
    for partition in range(draw(st.integers(2, 3))):
        t = T0 + draw(st.integers(0, 90)) * MIN
        for offset in range(draw(st.integers(0, 40))):
            step = draw(st.sampled_from([0, 1, 7, 29, 61, -2, -4, -9]))  # minutes; negative: out of order
            t = max(T0, t + step * MIN + draw(st.integers(0, 59_999)))
            fields = {
                "event_time": t, "event_type": "trip_requested", "trip_id": f"t{partition}-{offset}",
                "rider_id": f"r{draw(st.integers(0, 6))}", "country": "US", "city": "nyc",
                "pickup_zone": draw(st.sampled_from(["z1", "z2", "z3"])), "dropoff_zone": f"d{offset % 4}",
                "distance_km": draw(st.sampled_from([1.5, 2.25, 7.0, 12.5])), "surge": 1.0,
            }  # fmt: skip
            events.append((partition, offset, fields))
    return events


def reference_late(events: list[Event]) -> set[tuple[int, int]]:
    """(partition, offset) of the late events: older than their partition's earlier maximum minus the lateness."""
    late, seen = set(), {}
    for partition, offset, fields in sorted(events, key=lambda e: (e[0], e[1])):
        t = fields["event_time"]
        if t < seen.get(partition, -1) - LATENESS:
            late.add((partition, offset))
        seen[partition] = max(seen.get(partition, -1), t)
    return late


@st.composite
def schedules(draw: st.DrawFn, events: list[Event]) -> list[list[Event]]:
    """Batches read in a random, out-of-step order: each takes the next few records of one partition."""
    queues: dict[int, list[Event]] = defaultdict(list)
    for event in sorted(events, key=lambda e: (e[0], e[1])):
        queues[event[0]].append(event)
    batches: list[list[Event]] = []
    while any(queues.values()):
        partition = draw(st.sampled_from(sorted(p for p, q in queues.items() if q)))
        take = draw(st.integers(1, 25))
        batch, queues[partition] = queues[partition][:take], queues[partition][take:]
        if batches and draw(st.booleans()):
            batches[-1] += batch  # a batch mixing partitions, as a poll of several partitions would
        else:
            batches.append(batch)
    return batches


def run(
    events: list[Event], batches: list[list[Event]], partitions: int
) -> tuple[GroupState, list[Any], list[HistoryRow]]:
    engine = GroupEngine(make_group(allowed_lateness="5m"))
    state, stamps = GroupState(partitions), PriorMax()
    rejected: list[Any] = []
    history: list[HistoryRow] = []
    for batch in batches:
        rows = [SourceRow(f, p, o, prior_max=stamps.stamp(p, "trip_requested", f["event_time"])) for p, o, f in batch]
        result = engine.apply(state, rows)
        rejected += result.rejected
        state.advance(stamps.of("trip_requested"))
        history += engine.finalize(state, state.horizon(LATENESS))
    history += engine.finalize_all(state)
    return state, rejected, history


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_late_events_and_history_rows_follow_the_definition_however_partitions_are_read(data: st.DataObject) -> None:
    events = data.draw(logs())
    partitions = len({p for p, _, _ in events}) or 1
    group = make_group(allowed_lateness="5m")
    state, rejected, history = run(events, data.draw(schedules(events)), partitions)

    late = reference_late(events)
    assert {(r.row.partition, r.row.offset) for r in rejected} == late
    assert {r.reason for r in rejected} <= {"late_event"}
    accepted = [f for p, o, f in events if (p, o) not in late]

    # One row per entity and hour with accepted events, as of its last accepted event in that hour.
    expected_keys: dict[tuple[str, int], int] = {}
    for f in accepted:
        key = (f["pickup_zone"], f["event_time"] // HOUR_MS)
        expected_keys[key] = max(expected_keys.get(key, -1), f["event_time"])
    assert sorted((r.entity, r.event_time) for r in history) == sorted((e, u) for (e, _), u in expected_keys.items())
    assert not any(r.forced for r in history)
    for row in history:
        assert row.values == group_values_as_of(group, accepted, row.event_time)[row.entity], row
        mine = [f for f in accepted if f["pickup_zone"] == row.entity and f["event_time"] <= row.event_time]
        assert row.revision == len(mine)

    # The online state does not depend on the reading order either.
    one_pass, _, _ = run(events, [sorted(events, key=lambda e: (e[0], e[1]))], partitions)
    assert {e: (s.u, s.rev, s.to_bytes()) for e, s in state.entities.items()} == {
        e: (s.u, s.rev, s.to_bytes()) for e, s in one_pass.entities.items()
    }
    assert all(s.history is None for s in state.entities.values()) and not state.open_hours


def test_a_silent_partition_holds_the_history_back_until_forced() -> None:
    engine = GroupEngine(make_group())
    state, stamps = GroupState(partitions=2), PriorMax()
    rows = []
    for i in range(8 * 60):  # eight hours of events on partition 0 only
        t = T0 + i * MIN
        fields = {"event_time": t, "event_type": "trip_requested", "trip_id": f"t{i}", "rider_id": "r",
                  "country": "US", "city": "nyc", "pickup_zone": "z1", "dropoff_zone": "d",
                  "distance_km": 2.0, "surge": 1.0}  # fmt: skip
        rows.append(SourceRow(fields, 0, i, prior_max=stamps.stamp(0, "trip_requested", t)))
    engine.apply(state, rows)
    state.advance(stamps.of("trip_requested"))
    assert state.horizon(LATENESS) is None  # partition 1 never seen: no watermark
    assert engine.finalize(state, state.horizon(LATENESS)) == []
    forced = engine.finalize(state, None, force_before=state.furthest - 3 * HOUR_MS)
    assert [r.event_time for r in forced] == [T0 + (h * 60 + 59) * MIN for h in range(4)]
    assert all(r.forced for r in forced) and len(state.open_hours) == 4


def _request(partition: int, offset: int, t: int, km: float) -> dict[str, Any]:
    return {"event_time": t, "event_type": "trip_requested", "trip_id": f"t{partition}-{offset}", "rider_id": "r",
            "country": "US", "city": "nyc", "pickup_zone": "z1", "dropoff_zone": "d", "distance_km": km,
            "surge": 1.0}  # fmt: skip


def test_a_lagging_partition_still_finds_the_tiles_its_hours_need() -> None:
    def req(partition: int, offset: int, minute: int, zone: str, km: float) -> Event:
        return (partition, offset, {**_request(partition, offset, T0 + minute * MIN, km), "pickup_zone": zone})

    early = [req(0, 0, 10, "z1", 2.0), req(0, 1, 20, "z1", 4.0), req(0, 2, 50, "z1", 6.0), req(0, 3, 70, "z9", 1.0)]
    other = [req(1, 0, 66, "z9", 1.0)]  # now the watermark passes hour 0: z1's hour 0 is written
    later = [req(0, 4, 180, "z1", 9.0), req(0, 5, 190, "z1", 9.0)]  # z1 moves on: hour 0 leaves its online window
    lagging = [req(1, 1, 62, "z1", 1.0)]  # not late on partition 1, and its 1h window reaches into hour 0
    _, rejected, history = run(early + other + later + lagging, [early, other, later, lagging], partitions=2)
    assert rejected == []
    group = make_group(allowed_lateness="5m")
    accepted = [f for _, _, f in early + other + later + lagging]
    [row] = [r for r in history if r.entity == "z1" and r.event_time == T0 + 62 * MIN]
    assert row.values == group_values_as_of(group, accepted, row.event_time)["z1"]
    assert row.values["km_1h"] == (2.0 + 4.0 + 6.0 + 1.0) / 4  # partition 0's hour-0 events are in it
