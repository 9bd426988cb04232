"""Point-in-time-correct training sets: each label row gets each feature's value as of its time.

"As of t" is the definition in processors/README.md: built only from events with event_time ≤ t,
windows slid to t, values older than the group's TTL missing (null) — what an online read at
instant t returns. The sweep folds the group's events in event-time order into `GroupEngine`
state and reads `GroupEngine.values(state, t)` at each label time, so no later event can leak in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processors.definitions import FeatureGroup
from processors.engine import EntityState, GroupEngine, SourceRow

__all__ = ["FeatureRequest", "point_in_time_join"]


@dataclass(frozen=True)
class FeatureRequest:
    """Features of one group, and the label column that holds the group's entity key."""

    group: FeatureGroup
    features: tuple[str, ...]
    entity_column: str

    def column(self, feature: str) -> str:
        return f"{self.group.name}__{feature}"


def point_in_time_join(
    labels: Sequence[dict[str, Any]],
    time_column: str,
    requests: Sequence[FeatureRequest],
    events: dict[str, Sequence[SourceRow]],
) -> list[dict[str, Any]]:
    """`labels` with one column per requested feature (`<group>__<feature>`), in the same order.

    `events[group.ref]` are the group's validated source rows (any order: they are sorted here).
    """
    out = [dict(row) for row in labels]
    for request in requests:
        group = request.group
        engine = GroupEngine(group)
        time_field = group.spec.event_time
        rows = sorted(events.get(group.ref, ()), key=lambda r: (r.fields[time_field], r.partition, r.offset))
        queries: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(labels):
            queries[int(row[time_column])].append(i)
        states: dict[str, EntityState] = {}
        cursor = 0
        for t in sorted(queries):
            start = cursor
            while cursor < len(rows) and rows[cursor].fields[time_field] <= t:
                cursor += 1
            if cursor > start:
                # Sorted by event time: nothing is late, and the state holds exactly the events <= t.
                engine.apply(states, rows[start:cursor])
            for i in queries[t]:
                values = _as_of(engine, states, labels[i].get(request.entity_column), t, group.ttl_ms)
                for feature in request.features:
                    out[i][request.column(feature)] = None if values is None else values[feature]
    return out


def _as_of(
    engine: GroupEngine, states: dict[str, EntityState], entity: Any, t: int, ttl_ms: int
) -> dict[str, Any] | None:
    if entity is None:
        return None
    state = states.get(str(entity))
    if state is None or t - state.u > ttl_ms:
        return None  # never seen by t, or expired: what the online store would return
    return engine.values(state, t)
