"""Training/serving parity through the prediction core, on the embedded RocksDB store (and, through
`check_training_serving_parity`, on Cassandra in tests/integration/test_serving_cassandra.py).

The simulated marketplace is streamed through the demo groups' engines into a real RocksDB store,
as the processor writes it; at sampled trip requests — before the request's own event is folded,
and again after it is — the core scores the request from the store. The features and the
prediction must equal the training-set row built afterwards from the whole log, for the same
entity and time (the prediction rule: features as of 1 ms before the request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

import processors
from backfill.training import FeatureRequest, point_in_time_join
from models.bundle import load_bundle
from models.partitions import route
from models.publish import TrainingSetRef, write_model_bundle
from models.simulated import simulated_training_set
from models.training import train_partitioned
from models.validate import ModelDefinition, label_schema_of, load_model_spec
from processors.definitions import load_groups
from processors.engine import GroupEngine, GroupState, SourceRow
from processors.records import online_record
from serving.core import predict_replayed, predict_rows
from serving.model import LoadedModel
from state.online import open_store
from state.online.base import OnlineStore
from streams.sim import simulate

T0 = 1_767_225_600_000
SPEC = Path(__file__).parents[2] / "models" / "specs" / "eta.yaml"
EVENTS = 70_000


@pytest.fixture(scope="module")
def definition(tmp_path_factory: pytest.TempPathFactory) -> ModelDefinition:
    groups = {g.name: g for g in load_groups([Path(processors.__file__).parent / "features"])}
    doc = yaml.safe_load(SPEC.read_text())
    doc["trainer"] = {"library": "xgboost", "params": {"n_estimators": 30, "max_depth": 4}}
    doc["partitions"]["min_rows"], doc["partitions"]["min_validation_rows"] = 500, 50
    spec = tmp_path_factory.mktemp("spec") / "eta.yaml"
    spec.write_text(yaml.safe_dump(doc))
    return load_model_spec(spec, groups, label_schema_of)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, definition: ModelDefinition) -> LoadedModel:
    sim = simulated_training_set(definition, EVENTS, seed=21, start_ms=T0)
    result = train_partitioned(definition, sim.table)
    uri = str(tmp_path_factory.mktemp("bundle") / "eta" / "v1")
    ref = write_model_bundle(result, uri, 1, TrainingSetRef("simulated", "0" * 64, sim.table.num_rows))
    return LoadedModel.from_bundle(load_bundle(ref.uri, ref.sha256), definition.groups)


def _request_row(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "requested_at": fields["event_time"]}


def test_served_features_and_predictions_equal_the_training_set_rows(
    tmp_path: Path, definition: ModelDefinition, model: LoadedModel
) -> None:
    with open_store("rocksdb", path=tmp_path / "online") as store:
        served = check_training_serving_parity(store, definition, model)
    assert served > 100


def check_training_serving_parity(
    store: OnlineStore, definition: ModelDefinition, model: LoadedModel, *, every: int = 37
) -> int:
    """Stream the simulation into `store` (empty) as the processor would, serve every `every`-th event of the
    second half that is a trip request, before and after its own event is folded, and check each against its
    training-set row; returns how many requests were served. Shared by the RocksDB and Cassandra tests."""
    events = list(simulate(EVENTS, seed=22, start_ms=T0))
    engines = {use.group.name: use.engine for use in model.groups}
    states = {name: GroupState(partitions=1) for name in engines}
    by_type: dict[str, list[str]] = {}
    for use in model.groups:
        by_type.setdefault(use.group.event_type, []).append(use.group.name)
    pending: list[tuple[int, SourceRow, str]] = []
    served: list[tuple[dict[str, Any], Any, Any]] = []
    latest: dict[str, int] = {}

    def fold(until: int) -> None:
        """Fold every pending event before `until` into the groups and the store, as the processor would."""
        ready = [p for p in pending if p[0] < until]
        pending[:] = [p for p in pending if p[0] >= until]
        for name, engine in engines.items():
            rows = [row for _, row, etype in ready if name in by_type.get(etype, [])]
            if rows:
                result = engine.apply(states[name], rows)
                store.upsert([online_record(engine.group, u) for u in result.updates])

    for i, event in enumerate(events):
        fields = dict(event.__dict__)
        etype = event.type_name()
        if etype == "trip_requested" and i > EVENTS // 2 and i % every == 0:
            fold(event.event_time)  # everything before the request; not the request itself
            row = _request_row(fields)
            [before] = predict_rows(model, [row], store, now_ms=event.event_time)
            pending.append((event.event_time, SourceRow(fields, 0, i, prior_max=latest.get(etype, -1)), etype))
            fold(event.event_time + 1)  # now the request's own event (and its instant) is in the store
            [after] = predict_rows(model, [row], store, now_ms=event.event_time)
            served.append((row, before, after))
        else:
            pending.append((event.event_time, SourceRow(fields, 0, i, prior_max=latest.get(etype, -1)), etype))
        latest[etype] = max(latest.get(etype, -1), event.event_time)

    assert served, f"no trip request among every {every}th event of the second half"
    labels = pa.Table.from_pylist([row for row, _, _ in served])
    wanted: dict[str, list[str]] = {}
    for stored in definition.inputs.stored:
        wanted.setdefault(stored.group, []).append(stored.feature)
    requests = [FeatureRequest(definition.groups[g], tuple(f), definition.entities[g]) for g, f in wanted.items()]
    source = {
        r.group.ref: [SourceRow(dict(e.__dict__), 0, k) for k, e in enumerate(events)
                      if e.type_name() == r.group.event_type]
        for r in requests
    }  # fmt: skip
    table = point_in_time_join(labels, "requested_at", requests, source, before=True).to_pylist()
    columns = [s.column for s in definition.inputs.stored]
    x = definition.inputs.matrix({name: [r.get(name) for r in table] for name in model.inputs.columns_needed},
                                 len(table))  # fmt: skip
    ahead = 0
    for k, ((row, before, after), trained) in enumerate(zip(served, table, strict=True)):
        expected = {name: trained[name] for name in columns}
        assert before.features == expected, (row["trip_id"], before.features, expected)
        assert not before.ahead
        node = route(model.levels, model.serves, row)
        assert before.node == node and before.served_by == model.serves[node]
        offline = float(model.sessions[before.served_by].predict(x[k : k + 1])[0])
        assert before.prediction == offline  # the same number, not merely close
        # After the request's own event is folded, its zone's windows count it: the core says so.
        ahead += bool(after.ahead)
        if not after.ahead:
            assert after.features == expected
    assert ahead == len(served)  # every request lands in its own zone's state: always detected
    # Batch prediction's path (features replayed from the log by the batch as-of kernel): the same numbers.
    replayed = predict_replayed(model, [row for row, _, _ in served], source, now_ms=0)
    for (_, before, _), again in zip(served, replayed, strict=True):
        assert (again.features, again.prediction, again.node) == (before.features, before.prediction, before.node)
        # The time of each feature's state: the online record's, and the latest replayed event's.
        assert again.feature_times == before.feature_times and set(before.feature_times) == set(before.features)
    assert sum(bool(b.missing) for _, b, _ in served) < len(served)  # most rows have their features
    return len(served)


def test_unknown_entities_and_partitions_are_missing_features_not_errors(model: LoadedModel, tmp_path: Path) -> None:
    with open_store("rocksdb", path=tmp_path / "empty") as store:
        rows = [{"pickup_zone": "nowhere", "city": "atlantis", "country": "XX", "rider_id": "r-0",
                 "distance_km": 3.0, "requested_at": T0}]  # fmt: skip
        [scored] = predict_rows(model, rows, store, now_ms=T0)
    assert scored.node == "global" and scored.served_by == model.serves["global"]
    assert set(scored.missing) == {s.column for s in model.inputs.stored}
    assert np.isfinite(scored.prediction)
    assert set(scored.feature_times.values()) == {None}


def test_a_group_engine_is_shared_not_rebuilt(model: LoadedModel) -> None:
    assert all(isinstance(use.engine, GroupEngine) for use in model.groups)
    assert {use.entity_column for use in model.groups} == {"pickup_zone", "city", "rider_id"}
