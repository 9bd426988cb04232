"""The prediction core: rows of entity keys and request fields in, scored rows out.

One code path for the online service, batch prediction and `explain`:

1. each row's request time `t` is its model's time field (else the caller's `now`); its features
   are taken **as of `t - 1` ms** (`processors.prediction.features_instant`), the rule training
   sets follow;
2. every (group, entity) the rows need is read from the online store in **one multi-get**;
3. each value is recomputed as of that instant from the stored tiles with the group's kernel
   (`GroupEngine.values`, as `affresco features get` does); a record older than the group's TTL
   at that instant, or absent, makes the group's features missing (null), as in training sets;
4. the bundle's transforms run through `ModelInputs.matrix` (the feature DSL);
5. each row is routed to the deepest partition node on its path and scored by the ONNX model that
   serves that node, one ONNX Runtime call per serving node.

Batch prediction and `explain` take step 2-3 from the log instead (`replayed_features`: the
groups' source events through the batch as-of kernel, as training sets are built); steps 4-5
(`score`) are the same code for every path.

A record whose latest event is at or after `t` holds events the training set would not see (the
request's own event was processed first): its values are still computed, and the row says so
(`ahead`), since online state cannot be rewound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from backfill.training import FeatureRequest, event_time_column, point_in_time_join
from models.inputs import stored_column
from models.partitions import route_many
from processors.engine import EntityState, SourceRow
from processors.prediction import features_instant
from serving.model import LoadedModel
from state.online.base import OnlineRecord, OnlineStore

__all__ = [
    "FeatureFrame",
    "ScoredBatch",
    "ScoredRow",
    "features_from_records",
    "missing_features",
    "online_features",
    "online_keys",
    "predict_replayed",
    "predict_replayed_batch",
    "predict_rows",
    "replayed_features",
    "score",
    "score_batch",
]

_TIME = "__request_time__"


@dataclass
class ScoredRow:
    prediction: float
    node: str  # the deepest partition node on the row's path
    served_by: str  # the node whose model scored it
    request_time_ms: int
    features: dict[str, Any]  # `<group>__<feature>` -> value (None: missing)
    feature_times: dict[str, int | None]  # `<group>__<feature>` -> the event time of the state used (None: missing)
    missing: list[str] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)  # groups whose record holds events at or after t


@dataclass
class FeatureFrame:
    """Rows' model columns (request fields and `<group>__<feature>`), from the store or from the log."""

    times: list[int]
    columns: dict[str, list[Any]]
    feature_times: dict[str, list[int | None]]  # group -> per row, the event time of its state used (None: missing)
    ahead: list[list[str]]


def predict_rows(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], store: OnlineStore, *, now_ms: int
) -> list[ScoredRow]:
    """Score `rows` (each: entity keys, request fields and optionally the model's time field) from the online store."""
    return score(model, rows, online_features(model, rows, store, now_ms=now_ms))


def predict_replayed(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], events: Mapping[str, Sequence[SourceRow]], *, now_ms: int
) -> list[ScoredRow]:
    """Score `rows` with features replayed from the groups' source events (`explain`)."""
    return predict_replayed_batch(model, rows, events, now_ms=now_ms).rows(model)


def predict_replayed_batch(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], events: Mapping[str, Sequence[SourceRow]], *, now_ms: int
) -> ScoredBatch:
    """`predict_replayed` as columns (batch prediction)."""
    return score_batch(model, rows, replayed_features(model, rows, events, now_ms=now_ms))


def online_features(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], store: OnlineStore, *, now_ms: int
) -> FeatureFrame:
    """Features as of 1 ms before each row's request, from the stored tiles, in one multi-get."""
    keys, as_of = online_keys(model, rows, now_ms=now_ms)
    records = store.get_many(keys, now_ms=as_of) if keys else {}
    return features_from_records(model, rows, records, now_ms=now_ms)


def online_keys(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], *, now_ms: int
) -> tuple[list[tuple[str, str]], int]:
    """The (group, entity) keys `rows` need from the store, and the instant to read them as of.

    One read for every group and entity of the batch; expiry is judged per row afterwards, so the
    store is asked as of the earliest instant (a record expired then is expired for every row).
    """
    keys = sorted({(use.group.ref, str(row[use.entity_column])) for use in model.groups for row in rows
                   if row.get(use.entity_column) is not None})  # fmt: skip
    as_of = min(features_instant(_request_time(row, model.time_field, now_ms)) for row in rows) if rows else now_ms
    return keys, as_of


def features_from_records(
    model: LoadedModel,
    rows: Sequence[Mapping[str, Any]],
    records: Mapping[tuple[str, str], OnlineRecord | None],
    *,
    now_ms: int,
) -> FeatureFrame:
    """The rows' features from the records `online_keys` asked for: each value as of 1 ms before its row's request."""
    n = len(rows)
    times = [_request_time(row, model.time_field, now_ms) for row in rows]
    instants = [features_instant(t) for t in times]
    columns = _request_columns(model, rows, times)
    feature_times: dict[str, list[int | None]] = {}
    ahead: list[list[str]] = [[] for _ in rows]
    decoded: dict[tuple[str, str], EntityState] = {}
    for use in model.groups:
        values: dict[str, list[Any]] = {f: [None] * n for f in use.features}
        event_times: list[int | None] = feature_times.setdefault(use.group.name, [None] * n)
        for i, row in enumerate(rows):
            entity = row.get(use.entity_column)
            record = None if entity is None else records.get((use.group.ref, str(entity)))
            if record is None or instants[i] - record.event_time > use.group.ttl_ms:
                continue
            event_times[i] = record.event_time
            if record.event_time > instants[i]:
                ahead[i].append(use.group.name)
            found = use.engine.values(_state(decoded, record), instants[i])
            for f in use.features:
                values[f][i] = found[f]
        for f, column in values.items():
            columns[stored_column(use.group.name, f)] = column
    return FeatureFrame(times, columns, feature_times, ahead)


def missing_features(model: LoadedModel, rows: Sequence[Mapping[str, Any]], *, now_ms: int) -> FeatureFrame:
    """Every stored feature missing (degraded mode: the online store failed or overran its budget)."""
    n = len(rows)
    times = [_request_time(row, model.time_field, now_ms) for row in rows]
    columns = _request_columns(model, rows, times)
    for s in model.inputs.stored:
        columns[s.column] = [None] * n
    feature_times: dict[str, list[int | None]] = {use.group.name: [None] * n for use in model.groups}
    return FeatureFrame(times, columns, feature_times, [[] for _ in range(n)])


def replayed_features(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], events: Mapping[str, Sequence[SourceRow]], *, now_ms: int
) -> FeatureFrame:
    """Features as of 1 ms before each row's request, from `events[group.ref]` by the batch as-of kernel."""
    n = len(rows)
    times = [_request_time(row, model.time_field, now_ms) for row in rows]
    entity_columns = sorted({use.entity_column for use in model.groups})
    keys = {c: pa.array([_key(row.get(c)) for row in rows], pa.string()) for c in entity_columns}
    labels = pa.table({_TIME: pa.array(times, pa.int64()), **keys})
    requests = [FeatureRequest(use.group, use.features, use.entity_column) for use in model.groups]
    joined = point_in_time_join(labels, _TIME, requests, events, before=True, event_times=True)
    columns = _request_columns(model, rows, times)
    feature_times: dict[str, list[int | None]] = {}
    for r in requests:
        for f in r.features:
            columns[r.column(f)] = joined.column(r.column(f)).to_pylist()
        feature_times[r.group.name] = joined.column(event_time_column(r.group.name)).to_pylist()
    return FeatureFrame(times, columns, feature_times, [[] for _ in range(n)])


@dataclass
class ScoredBatch:
    """A scored frame as columns (batch prediction writes these); `rows()` gives one `ScoredRow` each."""

    frame: FeatureFrame
    predictions: np.ndarray  # float64, one per row
    nodes: list[str]  # per row, the deepest partition node on its path
    served_by: list[str]  # per row, the node whose model scored it

    def rows(self, model: LoadedModel) -> list[ScoredRow]:
        frame, columns, times = self.frame, self.frame.columns, self.frame.feature_times
        stored = [(s.column, s.group) for s in model.inputs.stored]
        out = []
        for i, prediction in enumerate(self.predictions.tolist()):
            features = {name: columns[name][i] for name, _ in stored}
            feature_times = {name: times[group][i] if group in times else None for name, group in stored}
            out.append(ScoredRow(prediction, self.nodes[i], self.served_by[i], frame.times[i], features,
                                 feature_times, [name for name, v in features.items() if v is None],
                                 frame.ahead[i]))  # fmt: skip
        return out


def score(model: LoadedModel, rows: Sequence[Mapping[str, Any]], frame: FeatureFrame) -> list[ScoredRow]:
    """The bundle's transforms, routing and ONNX Runtime on a frame, one `ScoredRow` per row."""
    return score_batch(model, rows, frame).rows(model)


def score_batch(model: LoadedModel, rows: Sequence[Mapping[str, Any]], frame: FeatureFrame) -> ScoredBatch:
    """The bundle's transforms, routing and ONNX Runtime on a frame: one ONNX call per serving node."""
    n = len(rows)
    x = model.inputs.matrix(frame.columns, n)
    levels = {level: [row.get(level) for row in rows] for level in model.levels}
    nodes = route_many(model.levels, model.serves, levels, n)
    served_by = [model.serves[node] for node in nodes]
    predictions = np.empty(n)
    members: dict[str, list[int]] = {}
    for i, serving in enumerate(served_by):
        members.setdefault(serving, []).append(i)
    for serving, indices in members.items():
        if len(indices) == n:
            predictions[:] = model.sessions[serving].predict(x)
        else:
            predictions[indices] = model.sessions[serving].predict(x[indices])
    return ScoredBatch(frame, predictions, nodes, served_by)


def _request_columns(model: LoadedModel, rows: Sequence[Mapping[str, Any]], times: list[int]) -> dict[str, list[Any]]:
    columns = {name: [row.get(name) for row in rows] for name in model.inputs.request}
    if model.time_field in columns:
        columns[model.time_field] = list(times)  # the request time, however the row gave it
    return columns


def _key(value: Any) -> str | None:
    # Entities are keyed by Python's str() of the key value, as the engine keys them.
    return None if value is None else str(value)


def _request_time(row: Mapping[str, Any], time_field: str, now_ms: int) -> int:
    """The row's request time: the model's time field, else the row's own event time (an event
    replayed as a request, e.g. `trip_requested`), else `now_ms`."""
    value = row.get(time_field)
    if value is None:
        value = row.get("event_time")
    return now_ms if value is None else int(value)


def _state(cache: dict[tuple[str, str], EntityState], record: OnlineRecord) -> EntityState:
    key = (record.group, record.entity)
    state = cache.get(key)
    if state is None:
        state = cache[key] = EntityState.from_bytes(record.state)
    return state
