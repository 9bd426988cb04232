"""A training set of the simulated marketplace, built in memory (no Kafka), for tests and benchmarks.

The features come from the same point-in-time join as `affresco training-set` (`point_in_time_join`
over the groups' events, accepted by `GroupEngine.evaluate`); only the reading differs: the
simulator's events are used as they are generated instead of being read back from Kafka. Each
label row keeps its trip's request, so the simulator's noise floor can be computed on any rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from backfill.training import FeatureRequest, point_in_time_join
from models.validate import ModelDefinition
from processors.engine import SourceRow
from streams.events.domain import TripCompleted, TripRequested
from streams.sim import simulate
from streams.sim.eta import noise_floor_rmse

__all__ = ["SimulatedTrainingSet", "simulated_training_set"]


@dataclass(frozen=True)
class SimulatedTrainingSet:
    table: pa.Table
    requests: dict[str, TripRequested]  # trip_id -> its request
    events: int

    def noise_floor_rmse(self, rows: Sequence[int]) -> float:
        """The best possible RMSE on these rows of the table (see `streams.sim.eta.noise_floor_rmse`)."""
        trips = self.table.column("trip_id").to_pylist()
        etas = self.table.column("eta_s").to_pylist()
        pairs = [(self.requests[trips[i]], etas[i]) for i in rows if trips[i] in self.requests]
        return noise_floor_rmse(pairs)


def simulated_training_set(
    definition: ModelDefinition, n_events: int, *, seed: int, start_ms: int
) -> SimulatedTrainingSet:
    """Completed trips of `n_events` simulated events as label rows, with the definition's stored features."""
    by_type: dict[str, list[SourceRow]] = {}
    labels: list[dict[str, object]] = []
    requests: dict[str, TripRequested] = {}
    latest: dict[str, int] = {}
    for i, event in enumerate(simulate(n_events, seed=seed, start_ms=start_ms)):
        fields = dict(event.__dict__)
        etype = event.type_name()
        # Generated in event-time order: the prior maximum is the running maximum, nothing is late.
        by_type.setdefault(etype, []).append(SourceRow(fields, 0, i, prior_max=latest.get(etype, -1)))
        latest[etype] = max(latest.get(etype, -1), event.event_time)
        if isinstance(event, TripRequested):
            requests[event.trip_id] = event
        elif isinstance(event, TripCompleted):
            labels.append(fields)
    wanted: dict[str, list[str]] = {}
    for stored in definition.inputs.stored:
        wanted.setdefault(stored.group, []).append(stored.feature)
    feature_requests = [
        FeatureRequest(definition.groups[g], tuple(f), definition.entities[g]) for g, f in wanted.items()
    ]
    events = {r.group.ref: by_type.get(r.group.event_type, []) for r in feature_requests}
    table = point_in_time_join(
        pa.Table.from_pylist(labels), definition.spec.training_set.time_field, feature_requests, events, before=True
    )
    return SimulatedTrainingSet(table, requests, n_events)
