"""What the served traffic looked like, per tumbling window of **prediction** time, per model,
version and partition node: drift of every model input and of the predictions against the
training distribution in the version's bundle, the share of missing features, serving latency
and the age of the features used.

The inputs are rebuilt from each prediction event (its stored features and request fields) with
the bundle's own `ModelInputs.matrix` — the code training and serving use — so a transform's
drift is measured on the very values the model saw. Metrics:

- `predictions` (how many); `missing_feature_rate`: the share of stored features that were null;
- `fallback_rate`: the share of predictions served by a coarser node than the deepest one on
  their path (the bundle's partition tree, routed as serving routes: `models.partitions.route`);
- `latency_p99_ms` (the service's own time; batch predictions carry none);
- `feature_age_p50_ms`: the median age of the feature states used, at prediction time;
- `prediction_psi`, `psi:<input>` and `ks:<input>` per model input, and `feature_psi_max`.

Drift needs `DRIFT_MIN_PREDICTIONS` in the window. Inputs computed from the request time alone
(the hour, the weekend flag) are left out of drift: a window covers one stretch of time, so its
hours never spread like the training's — a shift by construction, not a drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.inputs import ModelInputs
from models.partitions import route
from monitoring.drift import ks_statistic, psi
from monitoring.windows import TumblingWindows, WindowKey, WindowMetric
from streams.events.platform import Prediction

__all__ = ["DRIFT_MIN_PREDICTIONS", "TrafficWindows"]

#: Drift is measured on windows of at least this many predictions: on fewer, PSI over ten bins is
#: mostly sampling noise (an empty bin alone adds ~0.5).
DRIFT_MIN_PREDICTIONS = 200

Manifest = Mapping[str, Any]


@dataclass
class _Traffic:
    rows: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)
    missing: int = 0
    stored: int = 0
    latencies: list[float] = field(default_factory=list)
    ages: list[int] = field(default_factory=list)
    routed: int = 0  # predictions whose partition tree is known (the version's bundle)
    fallbacks: int = 0

    @staticmethod
    def merged(parts: list[_Traffic]) -> _Traffic:
        return _Traffic(
            [r for w in parts for r in w.rows], [p for w in parts for p in w.predictions],
            sum(w.missing for w in parts), sum(w.stored for w in parts), [x for w in parts for x in w.latencies],
            [a for w in parts for a in w.ages], sum(w.routed for w in parts), sum(w.fallbacks for w in parts),
        )  # fmt: skip


class TrafficWindows:
    def __init__(self, windows_ms: tuple[int, ...], manifest_of: Callable[[int], Manifest | None]) -> None:
        self.windows = TumblingWindows(windows_ms, _Traffic, _Traffic.merged, rollups=("version",))
        self.manifest_of = manifest_of  # version -> its bundle's manifest (None: unknown)
        self._trees: dict[int, tuple[tuple[str, ...], dict[str, str]] | None] = {}  # version -> levels, serves

    @property
    def late(self) -> int:
        """Predictions for a window already published: counted, not added."""
        return self.windows.late

    def add(self, prediction: Prediction | Mapping[str, Any]) -> None:
        """Take one prediction: the event, or its fields."""
        event = prediction if isinstance(prediction, Mapping) else prediction.__dict__
        version, partition, time_ms = event["model_version"], event["partition"], event["event_time"]
        features: Mapping[str, Any] = event["features"]
        row = {**event["inputs"], **features}
        nulls = sum(v is None for v in features.values())
        ages = [time_ms - t for t in event["feature_times"].values() if t is not None]
        fallback = self._fallback(version, partition, event["entity_keys"])
        latency, predicted = event["latency_ms"], event["prediction"]
        for w in self.windows.windows_of(time_ms, event["model"], version, partition):
            w.rows.append(row)
            w.predictions.append(predicted)
            w.missing += nulls
            w.stored += len(features)
            if latency is not None:
                w.latencies.append(latency)
            w.ages += ages
            if fallback is not None:
                w.routed += 1
                w.fallbacks += fallback

    def _fallback(self, version: int, partition: str, entity_keys: Mapping[str, str]) -> bool | None:
        """Whether a coarser node served it than the deepest on its path (None: the tree is unknown)."""
        if version not in self._trees:
            manifest = self.manifest_of(version)
            try:
                partitions = manifest["partitions"] if manifest is not None else None
                self._trees[version] = None if partitions is None else (
                    tuple(partitions["by"]), {n["id"]: n["serves"] for n in partitions["nodes"]})  # fmt: skip
            except (KeyError, TypeError):
                self._trees[version] = None
        tree = self._trees[version]
        if tree is None:
            return None
        levels, serves = tree
        return partition != route(levels, serves, entity_keys)

    def close(self, watermark_ms: int | None = None) -> list[WindowMetric]:
        return [m for key, w in self.windows.ready(watermark_ms) for m in self._metrics(key, w)]

    def _metrics(self, key: WindowKey, w: _Traffic) -> Iterable[WindowMetric]:
        length, start, scope, model, version, partition = key
        n = len(w.rows)
        values: dict[str, float | None] = {
            "predictions": float(n),
            "missing_feature_rate": w.missing / w.stored if w.stored else None,
            "fallback_rate": w.fallbacks / w.routed if w.routed else None,
            "latency_p99_ms": float(np.percentile(w.latencies, 99)) if w.latencies else None,
            "feature_age_p50_ms": float(np.median(w.ages)) if w.ages else None,
        }
        manifest = self.manifest_of(version) if version is not None else None
        if manifest is not None and n >= DRIFT_MIN_PREDICTIONS:
            values |= _drift(manifest, w)
        for metric, value in values.items():
            if value is not None and value == value:
                yield WindowMetric(scope, model, version, partition, length, start, metric, value, n)


def _drift(manifest: Manifest, w: _Traffic) -> dict[str, float | None]:
    inputs = ModelInputs.from_json(manifest["inputs"])
    distributions = manifest.get("distributions", {})
    names = inputs.names
    columns = {name: [row.get(name) for row in w.rows] for name in inputs.columns_needed}
    x = inputs.matrix(columns, len(w.rows))
    out: dict[str, float | None] = {"prediction_psi": None}
    if "__prediction__" in distributions:
        out["prediction_psi"] = psi(distributions["__prediction__"], np.asarray(w.predictions))
    feature_psi: list[float] = []
    clock = {manifest["training_set"]["time_field"], "event_time"}
    for j, name in enumerate(names):
        distribution = distributions.get(name)
        if distribution is None or distribution.get("kind") != "numeric" or inputs.fields_of(name) <= clock:
            continue  # clock inputs (hour, weekend): a window is one moment, never the training's spread
        value = psi(distribution, x[:, j])
        out[f"psi:{name}"] = value
        out[f"ks:{name}"] = ks_statistic(distribution, x[:, j])
        if value is not None:
            feature_psi.append(value)
    out["feature_psi_max"] = max(feature_psi) if feature_psi else None
    return out
