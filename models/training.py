"""Training one logical model over a partition hierarchy, in one job, from one training set.

1. The training set becomes one float32 input matrix (`ModelInputs.matrix`, the code serving uses)
   and one label vector; one time split (`TimeSplit`) holds out the latest part of the label time
   range. Every node's rows are an index into these arrays.
2. Nodes are trained top-down, one level at a time; the (node, trial) fits of a level run in
   parallel threads (the libraries release the GIL), each with its share of the cores. A node's
   best model is exported to ONNX on one more thread as soon as its trials are done, beside the
   fits still running (conversion holds the GIL, fits do not).
3. A node keeps its own model only if it had `min_rows` training rows, `min_validation_rows`
   validation rows, and its best trial beats the model that would otherwise serve it (its
   parent's, or whichever ancestor's serves the parent) on the node's own validation rows.
   Otherwise it falls back, and the reason is recorded with the figures.
4. Every serving model is exported to ONNX and must pass the parity gate; the whole model's
   metrics are those of the ONNX models, routed as serving routes, on the validation rows.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.distributions import categorical_distribution, numeric_distribution
from models.exceptions import ExportError, TrainingError
from models.metrics import LOWER_IS_BETTER, metrics_for
from models.onnx import OnnxModel, ParityReport, check_parity
from models.partitions import PartitionNode, PartitionTree
from models.search import trials
from models.split import TimeSplit
from models.trainers import FittedModel, OnnxExport, get_trainer
from models.validate import ModelDefinition
from processors.exceptions import ProcessorsError

__all__ = ["NodeResult", "TrainingOptions", "TrainingResult", "train_partitioned"]

PARITY_ROWS = 2000
Progress = Callable[[str, int, int], None]
"""Called after each fit with what was fitted, the fits done and the fits planned."""


@dataclass(frozen=True)
class TrainingOptions:
    workers: int = 2  # (node, trial) fits running at once
    cores: int = os.cpu_count() or 1
    seed: int = 0


@dataclass
class NodeResult:
    node: PartitionNode
    rows_train: int
    rows_validation: int
    trained: bool = False
    serves: str = ""
    reason: str = ""
    params: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    # On the node's validation rows: "model" (its own, if trained), "served" (what serving gives
    # those rows: each routed to its deepest node's serving model, in ONNX), and the two baselines.
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    score: float = float("nan")  # the best trial's validation metric
    model: FittedModel | None = field(default=None, repr=False)
    export: OnnxExport | None = field(default=None, repr=False)
    onnx: OnnxModel | None = field(default=None, repr=False)
    parity: ParityReport | None = None

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def serves_itself(self) -> bool:
        return self.serves == self.id


@dataclass(frozen=True)
class _Trial:
    params: dict[str, Any]
    model: FittedModel
    score: float
    seconds: float


@dataclass
class TrainingResult:
    definition: ModelDefinition
    split: TimeSplit
    tree: PartitionTree
    nodes: dict[str, NodeResult]
    metrics: dict[str, dict[str, float]]  # "model", "baseline_global_mean", "baseline_node_mean"
    importances: dict[str, float]
    distributions: dict[str, Any]
    rows_dropped: int
    seconds: float
    fits: int


def train_partitioned(
    definition: ModelDefinition,
    table: pa.Table,
    options: TrainingOptions | None = None,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train every node of the hierarchy; raise `TrainingError` (before any fit when it cannot work at all)
    or `ExportError` (the root's export refused)."""
    return _Job(definition, table, options or TrainingOptions(), progress).run()


class _Job:
    def __init__(
        self, definition: ModelDefinition, table: pa.Table, options: TrainingOptions, progress: Progress | None
    ) -> None:
        from backfill.training import label_times

        spec = definition.spec
        self.definition, self.options, self.progress = definition, options, progress
        self.task = spec.task
        self.metric = definition.fallback_metric
        # A row without a label (null, NaN, infinite) teaches nothing: dropped, and counted.
        label = table.column(spec.label)
        if pa.types.is_floating(label.type):
            usable = pc.and_(pc.is_valid(label), pc.is_finite(label)).fill_null(False)
        else:
            usable = pc.is_valid(label)
        self.rows_dropped = table.num_rows - pc.sum(usable.cast(pa.int64())).as_py() if table.num_rows else 0
        if self.rows_dropped:
            table = table.filter(usable)
        if not table.num_rows:
            msg = f"the training set has no row with a {spec.label!r} label"
            raise TrainingError(msg)
        self.n = table.num_rows
        self.y = table.column(spec.label).to_numpy(zero_copy_only=False).astype(np.float64)
        if self.task == "binary" and not np.isin(self.y, (0.0, 1.0)).all():
            bad = sorted(set(np.unique(self.y).tolist()) - {0.0, 1.0})[:5]
            msg = f"a binary label must be 0/1 or false/true; {spec.label!r} holds {bad}"
            raise TrainingError(msg)
        inputs = definition.inputs
        missing = [
            name for name in [*inputs.columns_needed, *definition.partition_columns] if name not in table.column_names
        ]
        if missing:
            names = ", ".join(map(repr, missing))
            msg = f"the training set has no column {names} (columns: {', '.join(table.column_names)})"
            raise TrainingError(msg)
        columns = {name: _values(table.column(name)) for name in inputs.columns_needed}
        partition_values = {name: _values(table.column(name)) for name in definition.partition_columns}
        try:
            self.x = inputs.matrix(columns, self.n)
            times = label_times(table, spec.training_set.time_field)
        except (ValueError, ProcessorsError) as exc:
            raise TrainingError(str(exc)) from None
        self.split = TimeSplit.of(times, spec.validation.fraction)
        self.tree = PartitionTree.build(partition_values, self.n, definition.partition_columns)
        self.partition_values = partition_values
        self.trainer = get_trainer(spec.trainer.library)
        self.trials = trials(spec.trainer.params, spec.trainer.search)
        self.fits = self.planned = 0
        self.lock = threading.Lock()
        self.exporter = ThreadPoolExecutor(1)  # ONNX conversions, beside the fits
        self.exports: dict[str, Future[tuple[OnnxExport, OnnxModel, ParityReport]]] = {}

    def rows(self, node: PartitionNode) -> tuple[np.ndarray, np.ndarray]:
        train = self.split.train[node.rows]
        return node.rows[train], node.rows[~train]

    def run(self) -> TrainingResult:
        started = time.monotonic()
        spec = self.definition.spec.partitions
        results: dict[str, NodeResult] = {}
        for node in self.tree.nodes.values():
            train, valid = self.rows(node)
            results[node.id] = NodeResult(node, len(train), len(valid))
        root = results["global"]
        if root.rows_train < spec.min_rows:
            msg = (
                f"every node is under its minimum: the whole training set has {root.rows_train:,} training rows "
                f"before the validation cut-off, partitions.min_rows is {spec.min_rows:,}"
            )
            raise TrainingError(msg)
        if not root.rows_validation:
            msg = "the validation part of the label time range holds no row; widen the time range or the fraction"
            raise TrainingError(msg)
        self.planned = sum(not self._cannot_train(r) for r in results.values()) * len(self.trials)
        try:
            for level in self.tree.by_depth():
                self._train_level([results[n.id] for n in level], results)
            self._export(results)
        finally:
            self.exporter.shutdown(cancel_futures=True)
        model_metrics, importances = self._evaluate(results)
        return TrainingResult(
            self.definition, self.split, self.tree, results, model_metrics, importances, self._distributions(results),
            self.rows_dropped, time.monotonic() - started, self.fits,
        )  # fmt: skip

    # -- one level ------------------------------------------------------------------------------
    def _train_level(self, level: list[NodeResult], results: dict[str, NodeResult]) -> None:
        todo = []
        for result in level:
            reason = self._cannot_train(result)
            if reason:
                if result.node.parent is None:
                    msg = f"the root of the hierarchy cannot be trained: {reason}"
                    raise TrainingError(msg)
                result.serves, result.reason = results[result.node.parent].serves, reason
                continue
            todo += [(result, k, params) for k, params in enumerate(self.trials)]
        if not todo:
            return
        parallel = max(1, min(self.options.workers, len(todo)))
        threads = max(1, self.options.cores // parallel)
        by_node: dict[str, list[_Trial]] = {}
        with ThreadPoolExecutor(parallel) as pool:
            futures = {pool.submit(self._fit, r, k, params, threads): (r, params) for r, k, params in todo}
            failed: Future[Any] | None = None
            for future in as_completed(futures):
                if future.exception() is not None:
                    failed = future
                    break
                result, params = futures[future]
                trials = by_node.setdefault(result.id, [])
                trials.append(_Trial(params, *future.result()))
                if len(trials) == len(self.trials):
                    # The node's best model is known: export it while the level's other fits run
                    # (they release the GIL; the conversion holds it). Kept only if the node serves.
                    self._keep_best(result, trials)
            if failed is not None:
                for future in futures:
                    future.cancel()  # the fits not started yet: the job stops with the first failure
                raise failed.exception()  # type: ignore[misc]  # a TrainingError naming the node
        for result in level:
            if result.id in by_node:
                self._decide(result, results)

    def _fit(
        self, result: NodeResult, trial: int, params: dict[str, Any], threads: int
    ) -> tuple[FittedModel, float, float]:
        train, valid = self.rows(result.node)
        started = time.monotonic()
        try:
            model = self.trainer.fit(
                self.task, self.x[train], self.y[train], params, threads=threads, seed=self.options.seed
            )
        except Exception as exc:  # each library raises its own types; the node and params say where
            msg = f"node {result.id}: {self.trainer.library} failed to fit with {params}: {type(exc).__name__}: {exc}"
            raise TrainingError(msg) from exc
        seconds = time.monotonic() - started
        score = (
            metrics_for(self.task, self.y[valid], model.predict(self.x[valid])).get(self.metric, np.nan)
            if len(valid)
            else np.nan
        )
        with self.lock:
            self.fits += 1
            if self.progress is not None:
                self.progress(f"{result.id} trial {trial + 1}/{len(self.trials)}", self.fits, self.planned)
        return model, float(score), seconds

    def _cannot_train(self, result: NodeResult) -> str:
        """Why a node gets no model of its own before any fit ('' when it can be trained)."""
        minimum = self.definition.spec.partitions.min_rows
        if result.rows_train < minimum:
            return f"too few training rows ({result.rows_train:,} < min_rows {minimum:,})"
        if self.task == "binary":
            train, _ = self.rows(result.node)
            classes = np.unique(self.y[train])
            if len(classes) < 2:
                return f"every training row has label {classes[0]:g}: one class, nothing to separate"
        return ""

    def _keep_best(self, result: NodeResult, trials: list[_Trial]) -> None:
        """Keep a node's best trial (by its validation metric) and start exporting it."""
        lower = LOWER_IS_BETTER[self.metric]
        order = {repr(p): k for k, p in enumerate(self.trials)}
        trials.sort(key=lambda t: order[repr(t.params)])  # in the trials' order, however they finished
        result.trials = [{"params": t.params, self.metric: t.score, "seconds": round(t.seconds, 3)} for t in trials]
        scored = [t for t in trials if not np.isnan(t.score)] or trials
        best = min(scored, key=lambda t: t.score if lower else -t.score)
        result.trained, result.model, result.params, result.score = True, best.model, best.params, best.score
        result.fit_seconds = sum(t.seconds for t in trials)
        names = self.definition.inputs.names
        result.importances = dict(zip(names, best.model.importances().round(6).tolist(), strict=True))
        self.exports[result.id] = self.exporter.submit(self._export_one, result)

    def _decide(self, result: NodeResult, results: dict[str, NodeResult]) -> None:
        lower = LOWER_IS_BETTER[self.metric]
        score = result.score
        parent = result.node.parent
        if parent is None:
            result.serves, result.reason = result.id, "the root of the hierarchy"
            return
        _, valid = self.rows(result.node)
        minimum = self.definition.spec.partitions.min_validation_rows
        fallback = results[parent].serves
        if len(valid) < minimum:
            result.serves = fallback
            result.reason = f"too few validation rows to compare with {fallback} ({len(valid):,} < {minimum:,})"
            return
        other = results[fallback].model
        assert other is not None  # a serving node always has a model
        theirs = metrics_for(self.task, self.y[valid], other.predict(self.x[valid]))[self.metric]
        better = score < theirs if lower else score > theirs
        if better:
            result.serves = result.id
            result.reason = (
                f"validation {self.metric} {score:.6g} beats {fallback}'s {theirs:.6g} on its {len(valid):,} rows"
            )
        else:
            result.serves = fallback
            result.reason = (
                f"validation {self.metric} {score:.6g} does not beat {fallback}'s {theirs:.6g} on its "
                f"{len(valid):,} validation rows"
            )

    # -- export and evaluation ------------------------------------------------------------------
    def _export_one(self, result: NodeResult) -> tuple[OnnxExport, OnnxModel, ParityReport]:
        """A node's best model in ONNX, held to the native model by the parity gate on held-out rows first."""
        assert result.model is not None
        train, valid = self.rows(result.node)
        sample = np.concatenate([valid, train])[:PARITY_ROWS]
        try:
            export = result.model.to_onnx()
            onnx = OnnxModel(export.model, export.output, export.column)
        except Exception as exc:  # converters raise anything; the node says where
            msg = f"node {result.id}: ONNX conversion failed: {type(exc).__name__}: {exc}"
            raise ExportError(msg) from exc
        x = self.x[sample]
        return export, onnx, check_parity(result.model.predict(x), onnx.predict(x), what=f"node {result.id}")

    def _export(self, results: dict[str, NodeResult]) -> None:
        """Collect the serving nodes' exports, parents first (a node that fell back is not exported).

        A node whose export is refused (parity gate, converter) falls back like a node that lost to
        its parent, the refusal and its figures as the reason; the root's refusal stops the job.
        """
        for result in results.values():
            if not result.serves_itself:
                continue
            try:
                result.export, result.onnx, result.parity = self.exports[result.id].result()
            except ExportError as exc:
                if result.node.parent is None:
                    raise
                fallback = results[result.node.parent].serves
                for other in results.values():
                    if other.serves == result.id:
                        other.serves = fallback
                result.reason = f"{exc}; served by {fallback} instead"

    def _served_predictions(self, rows: np.ndarray, results: dict[str, NodeResult]) -> np.ndarray:
        """The ONNX prediction of each row, from the model serving its deepest node."""
        deepest = self._deepest[rows]
        out = np.empty(len(rows))
        ids = list(self.tree.nodes)
        for code in np.unique(deepest):
            serving = results[results[ids[code]].serves]
            assert serving.onnx is not None
            mask = deepest == code
            out[mask] = serving.onnx.predict(self.x[rows[mask]])
        return out

    def _node_means(self, results: dict[str, NodeResult]) -> dict[str, float]:
        means: dict[str, float] = {}
        for node in self.tree.nodes.values():
            train, _ = self.rows(node)
            if len(train):
                means[node.id] = float(self.y[train].mean())
            else:  # nothing to average before the cut-off: the nearest ancestor's mean
                means[node.id] = means[node.parent] if node.parent else float("nan")
        return means

    def _evaluate(self, results: dict[str, NodeResult]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        self._deepest = self.tree.deepest(self.n)
        train_all = np.flatnonzero(self.split.train)
        valid_all = np.flatnonzero(self.split.validation)
        global_mean = float(self.y[train_all].mean())
        means = self._node_means(results)
        ids = list(self.tree.nodes)
        mean_of_row = np.array([means[ids[c]] for c in range(len(ids))])[self._deepest]
        served = np.empty(self.n)
        served[valid_all] = self._served_predictions(valid_all, results)
        self._validation_predictions = served[valid_all]
        for result in results.values():
            _, valid = self.rows(result.node)
            if not len(valid):
                continue
            y = self.y[valid]
            result.metrics["served"] = metrics_for(self.task, y, served[valid])
            if result.model is not None:
                result.metrics["model"] = metrics_for(self.task, y, result.model.predict(self.x[valid]))
            result.metrics["baseline_global_mean"] = metrics_for(self.task, y, np.full(len(y), global_mean))
            result.metrics["baseline_node_mean"] = metrics_for(self.task, y, np.full(len(y), means[result.id]))
        y = self.y[valid_all]
        whole = {
            "model": metrics_for(self.task, y, served[valid_all]),
            "baseline_global_mean": metrics_for(self.task, y, np.full(len(y), global_mean)),
            "baseline_node_mean": metrics_for(self.task, y, mean_of_row[valid_all]),
        }
        # The whole model's importances: each serving node's, weighted by the rows it serves.
        weights: dict[str, int] = {}
        for code, count in zip(*np.unique(self._deepest, return_counts=True), strict=True):
            serving = results[ids[code]].serves
            weights[serving] = weights.get(serving, 0) + int(count)
        total = sum(weights.values())
        importances = dict.fromkeys(self.definition.inputs.names, 0.0)
        for node, weight in weights.items():
            for name, value in results[node].importances.items():
                importances[name] += value * weight / total
        return whole, {k: round(v, 6) for k, v in importances.items()}

    def _distributions(self, results: Mapping[str, NodeResult]) -> dict[str, Any]:
        train = self.split.train
        out: dict[str, Any] = {
            name: numeric_distribution(self.x[train, j]) for j, name in enumerate(self.definition.inputs.names)
        }
        for name, values in self.partition_values.items():
            out.setdefault(name, categorical_distribution(_take(values, train)))
        out["__prediction__"] = numeric_distribution(self._validation_predictions)
        return out


def _values(column: pa.ChunkedArray) -> list[Any]:
    """A column's values for the DSL: timestamps as UTC epoch ms (the DSL's time), the rest as they are."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
    values: list[Any] = column.to_pylist()
    return values


def _take(values: Sequence[Any], mask: np.ndarray) -> list[Any]:
    return [v for v, keep in zip(values, mask.tolist(), strict=True) if keep]
