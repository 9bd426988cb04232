"""The served traffic's windows: drift of every model input against the bundle's training
distribution (none on the training rows, large on a shifted input), missing features, latency."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.simulated import simulated_training_set
from models.validate import ModelDefinition
from monitoring.traffic import TrafficWindows
from serving.model import LoadedModel
from streams.events.platform import Prediction
from tests.unit.test_serving_core import EVENTS, T0, definition, model

__all__ = ["definition", "model"]

DAY = 86_400_000  # one window holds the whole simulated set


def _events(definition: ModelDefinition, model: LoadedModel, scale_km: float = 1.0) -> list[Prediction]:
    """The training rows (the model's own simulated set, its training split) as prediction events at their times."""
    cutoff = model.manifest["training_set"]["split"]["cutoff_ms"]
    rows = [
        r
        for r in simulated_training_set(definition, EVENTS, seed=21, start_ms=T0).table.to_pylist()
        if r["requested_at"] < cutoff
    ]  # the validation rows are later hours: hour_utc would drift
    stored = [s.column for s in model.inputs.stored]
    return [Prediction(event_time=r["requested_at"], request_id=f"p{i}", model="eta", model_version=model.version,
                       partition="global", prediction=600.0, latency_ms=float(i % 7),
                       features={c: r[c] for c in stored},
                       inputs={**{f: r[f] for f in model.inputs.request if r.get(f) is not None},
                               "distance_km": r["distance_km"] * scale_km},
                       feature_times={c: r["requested_at"] - 60_000 for c in stored})
            for i, r in enumerate(rows)]  # fmt: skip


def _close(events: list[Prediction], model: LoadedModel) -> dict[str, Any]:
    windows = TrafficWindows((DAY,), lambda version: model.manifest if version == model.version else None)
    for event in events:
        windows.add(event)
    return {m.metric: m for m in windows.close() if m.scope == "version"}


def test_no_drift_on_the_training_rows_and_a_clear_one_on_a_shifted_input(
    definition: ModelDefinition, model: LoadedModel
) -> None:
    same = _close(_events(definition, model), model)
    assert same["predictions"].value == same["predictions"].count > 1000
    assert same["feature_psi_max"].value < 0.05, {k: round(m.value, 3) for k, m in same.items() if k.startswith("psi:")}
    shifted = _close(_events(definition, model, scale_km=1.6), model)
    assert shifted["psi:distance_km"].value > 0.25 and shifted["ks:distance_km"].value > 0.2
    assert shifted["psi:log_distance_km"].value > 0.25  # a transform of it, rebuilt as the model saw it
    assert "psi:hour_utc" not in shifted and "psi:weekend" not in shifted  # clock inputs: no drift measured
    assert shifted["feature_psi_max"].value == max(m.value for k, m in shifted.items() if k.startswith("psi:"))
    assert shifted["psi:zone_demand__requests_10m"].value < 0.05  # a stored feature left alone


def test_missing_features_latency_and_feature_age(definition: ModelDefinition, model: LoadedModel) -> None:
    events = _events(definition, model)
    found = _close(events, model)
    nulls = sum(v is None for e in events for v in e.features.values())
    assert found["missing_feature_rate"].value == pytest.approx(nulls / sum(len(e.features) for e in events))
    assert found["latency_p99_ms"].value == pytest.approx(np.percentile([e.latency_ms for e in events], 99))
    assert found["feature_age_p50_ms"].value == 60_000


def test_without_the_bundle_there_is_no_drift_but_the_rest(definition: ModelDefinition, model: LoadedModel) -> None:
    windows = TrafficWindows((DAY,), lambda version: None)
    for event in _events(definition, model)[:50]:
        windows.add(event)
    names = {m.metric for m in windows.close()}
    assert "predictions" in names and not any(n.startswith(("psi:", "ks:")) for n in names)


def test_the_fallback_rate_is_the_share_served_above_the_deepest_node_on_the_path(
    definition: ModelDefinition, model: LoadedModel
) -> None:
    from models.partitions import route

    nodes = model.manifest["partitions"]["nodes"]
    leaves = [n["id"] for n in nodes if n["id"].count("/") == len(model.levels)]
    assert leaves, [n["id"] for n in nodes]
    leaf = leaves[0]
    path = dict(zip(model.levels, leaf.split("/")[1:], strict=True))
    events = _events(definition, model)[:300]
    served = [
        e.model_copy(update={"entity_keys": path if i % 3 else {**path, model.levels[-1]: "nowhere"},
                             "partition": leaf if i % 3 else route(model.levels, model.serves, {**path,
                                                                   model.levels[-1]: "nowhere"})})
        for i, e in enumerate(events)
    ]  # fmt: skip
    # Every third row's city is unknown to the tree: routed to its parent, which serves it — no fallback.
    # Then one in five of the others is served by the root instead of its own node: a fallback.
    served = [e.model_copy(update={"partition": "global"}) if i % 5 == 0 and i % 3 else e for i, e in enumerate(served)]
    expected = sum(1 for i in range(len(served)) if i % 5 == 0 and i % 3) / len(served)
    found = _close(served, model)
    assert found["fallback_rate"].value == pytest.approx(expected) and expected > 0
    no_tree = TrafficWindows((DAY,), lambda version: None)
    for event in served:
        no_tree.add(event)
    assert "fallback_rate" not in {m.metric for m in no_tree.close()}
