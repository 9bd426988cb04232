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

A record whose latest event is at or after `t` holds events the training set would not see (the
request's own event was processed first): its values are still computed, and the row says so
(`ahead`), since online state cannot be rewound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.partitions import route
from processors.engine import EntityState
from processors.prediction import features_instant
from serving.model import LoadedModel
from state.online.base import OnlineRecord, OnlineStore

__all__ = ["ScoredRow", "predict_rows"]


@dataclass
class ScoredRow:
    prediction: float
    node: str  # the deepest partition node on the row's path
    served_by: str  # the node whose model scored it
    request_time_ms: int
    features: dict[str, Any]  # `<group>__<feature>` -> value (None: missing)
    feature_times: dict[str, int | None]  # group -> the event time of the record used (None: missing)
    missing: list[str] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)  # groups whose record holds events at or after t


def predict_rows(
    model: LoadedModel, rows: Sequence[Mapping[str, Any]], store: OnlineStore, *, now_ms: int
) -> list[ScoredRow]:
    """Score `rows` (each: entity keys, request fields and optionally the model's time field)."""
    n = len(rows)
    if not n:
        return []
    times = [_request_time(row, model.time_field, now_ms) for row in rows]
    instants = [features_instant(t) for t in times]
    keys = sorted({(use.group.ref, str(row[use.entity_column])) for use in model.groups for row in rows
                   if row.get(use.entity_column) is not None})  # fmt: skip
    # One read for every group and entity of the batch; expiry is judged per row below, so the
    # store is asked as of the earliest instant (a record expired then is expired for every row).
    records = store.get_many(keys, now_ms=min(instants)) if keys else {}
    columns: dict[str, list[Any]] = {name: [row.get(name) for row in rows] for name in model.inputs.request}
    feature_times: list[dict[str, int | None]] = [{} for _ in rows]
    ahead: list[list[str]] = [[] for _ in rows]
    decoded: dict[tuple[str, str], EntityState] = {}
    for use in model.groups:
        values: dict[str, list[Any]] = {f: [None] * n for f in use.features}
        for i, row in enumerate(rows):
            entity = row.get(use.entity_column)
            record = None if entity is None else records.get((use.group.ref, str(entity)))
            if record is None or instants[i] - record.event_time > use.group.ttl_ms:
                feature_times[i][use.group.name] = None
                continue
            feature_times[i][use.group.name] = record.event_time
            if record.event_time > instants[i]:
                ahead[i].append(use.group.name)
            found = use.engine.values(_state(decoded, record), instants[i])
            for f in use.features:
                values[f][i] = found[f]
        for f, column in values.items():
            columns[f"{use.group.name}__{f}"] = column
    x = model.inputs.matrix(columns, n)
    nodes = [route(model.levels, model.serves, row) for row in rows]
    served_by = [model.serves[node] for node in nodes]
    predictions = np.empty(n)
    for serving in set(served_by):
        mask = np.array([s == serving for s in served_by])
        predictions[mask] = model.sessions[serving].predict(x[mask])
    stored = [s.column for s in model.inputs.stored]
    out = []
    for i in range(n):
        features = {name: columns[name][i] for name in stored}
        out.append(ScoredRow(float(predictions[i]), nodes[i], served_by[i], times[i], features, feature_times[i],
                             [name for name, v in features.items() if v is None], ahead[i]))  # fmt: skip
    return out


def _request_time(row: Mapping[str, Any], time_field: str, now_ms: int) -> int:
    value = row.get(time_field)
    return now_ms if value is None else int(value)


def _state(cache: dict[tuple[str, str], EntityState], record: OnlineRecord) -> EntityState:
    key = (record.group, record.entity)
    state = cache.get(key)
    if state is None:
        state = cache[key] = EntityState.from_bytes(record.state)
    return state
