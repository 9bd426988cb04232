"""A training result → a bundle (ONNX per serving node + manifest) and the registry's metrics.

The manifest is everything serving and monitoring need without the spec or the training set: the
inputs in order with their transforms and the feature-group versions they come from, the
partition tree with each node's fallback and reason, metrics and baselines, the training set's
reference and time range, library versions, each input's training distribution, and (written by
`write_bundle`) the sha256 of every file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from models.bundle import BundleRef, write_bundle
from models.onnx import OnnxModel
from models.trainers import ONNX_INPUT, get_trainer
from models.training import NodeResult, TrainingResult

__all__ = ["MANIFEST_FORMAT", "TrainingSetRef", "bundle_uri", "manifest_of", "registry_metrics", "write_model_bundle"]

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class TrainingSetRef:
    uri: str
    sha256: str
    rows: int
    built_from: dict[str, Any] | None = None  # how it was built (labels, label type, source), if it was


def bundle_uri(root: str, model: str, version: int) -> str:
    return f"{root.rstrip('/')}/{model}/v{version}"


def node_file(node_id: str) -> str:
    return f"nodes/{quote(node_id, safe='')}.onnx"


def _finite(metrics: Mapping[str, float]) -> dict[str, float | None]:
    # JSON has no NaN: an undefined metric (AUC of one class) is null.
    return {k: (round(v, 8) if math.isfinite(v) else None) for k, v in metrics.items()}


def _node_json(result: NodeResult) -> dict[str, Any]:
    node = result.node
    return {
        "id": node.id,
        "parent": node.parent,
        "depth": node.depth,
        "values": list(node.values),
        "rows_train": result.rows_train,
        "rows_validation": result.rows_validation,
        "trained": result.trained,
        "serves": result.serves,
        "reason": result.reason,
        "file": node_file(node.id) if result.serves_itself else None,
        "params": result.params,
        "trials": result.trials,
        "metrics": {name: _finite(m) for name, m in result.metrics.items()},
        "importances": result.importances,
        "parity": result.parity.to_json() if result.parity else None,
        "fit_seconds": round(result.fit_seconds, 3),
    }


def manifest_of(result: TrainingResult, version: int, training_set: TrainingSetRef) -> dict[str, Any]:
    definition = result.definition
    spec = definition.spec
    trainer = get_trainer(spec.trainer.library)
    import onnx

    outputs = {r.export.output for r in result.nodes.values() if r.export is not None}
    columns = {r.export.column for r in result.nodes.values() if r.export is not None}
    assert len(outputs) == 1 and len(columns) == 1  # one library, one task: one output layout
    return {
        "format": MANIFEST_FORMAT,
        "model": spec.model,
        "version": version,
        "task": spec.task,
        "label": spec.label,
        "owner": spec.owner,
        "description": spec.description,
        "created_at_ms": int(time.time() * 1000),
        "spec": spec.model_dump(mode="json"),
        "inputs": definition.inputs.to_json(),
        "entities": definition.entities,
        "feature_groups": {
            name: {"version": g.version, "fingerprint": g.fingerprint(), "ttl_ms": g.ttl_ms}
            for name, g in sorted(definition.groups.items())
        },
        "onnx": {"input": ONNX_INPUT, "output": outputs.pop(), "column": columns.pop(), "dtype": "float32"},
        "partitions": {
            "by": definition.partition_columns,
            "min_rows": spec.partitions.min_rows,
            "min_validation_rows": spec.partitions.min_validation_rows,
            "metric": definition.fallback_metric,
            # How a row finds its node: each value as Python's str(), node ids URL-quoted paths;
            # a value never seen in training stops at its parent (models.partitions.route).
            "values": "str",
            "nodes": [_node_json(r) for r in result.nodes.values()],
        },
        "metrics": {name: _finite(m) for name, m in result.metrics.items()},
        "importances": result.importances,
        "training_set": {
            "uri": training_set.uri,
            "sha256": training_set.sha256,
            "rows": training_set.rows,
            "rows_without_label": result.rows_dropped,
            "time_field": spec.training_set.time_field,
            "built_from": training_set.built_from,
            "split": result.split.to_json(),
        },
        "trainer": {
            "library": spec.trainer.library,
            "params": spec.trainer.params,
            "search": spec.trainer.search.model_dump(mode="json") if spec.trainer.search else None,
        },
        "libraries": {**trainer.versions(), "onnx": onnx.__version__, "onnxruntime": OnnxModel.version()},
        "distributions": result.distributions,
        "training_seconds": round(result.seconds, 3),
    }


def write_model_bundle(result: TrainingResult, uri: str, version: int, training_set: TrainingSetRef) -> BundleRef:
    files = {node_file(r.id): r.export.model for r in result.nodes.values() if r.export is not None}
    return write_bundle(uri, files, manifest_of(result, version, training_set))


def registry_metrics(result: TrainingResult) -> dict[str, float]:
    """The flat metrics a registry event carries (the leaderboard's columns)."""
    out: dict[str, float] = {}
    for name, values in result.metrics.items():
        prefix = "" if name == "model" else f"{name}."
        out |= {f"{prefix}{k}": v for k, v in values.items() if math.isfinite(v)}
    out["rows_train"] = result.split.to_json()["rows_train"]
    out["rows_validation"] = result.split.to_json()["rows_validation"]
    out["nodes"] = len(result.nodes)
    out["nodes_fallback"] = sum(not r.serves_itself for r in result.nodes.values())
    return out
