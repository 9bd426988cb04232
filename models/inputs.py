"""A model's inputs: stored features, request fields and DSL transforms, turned into one float32 matrix.

This is the one place where rows become model inputs. Training calls it on the training set,
batch prediction and serving on their rows: a transform is the feature DSL's compiled expression,
evaluated column-wise by the same code everywhere. A null value (a feature never seen, a
transform that gives None) is NaN, which the tree libraries and ONNX Runtime treat as missing.

Stored features are columns named `<group>__<feature>`, as in training sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from processors.definitions import Feature, FeatureGroup
from processors.dsl import FLOAT, INT, CompiledExpression, FieldType, Kind, compile_expression
from processors.kernels import Agg

__all__ = ["ModelInput", "ModelInputs", "StoredFeature", "feature_type", "stored_column"]

InputKind = Literal["stored", "request", "transform"]


def stored_column(group: str, feature: str) -> str:
    """The column of a stored feature in a training set (and the name a transform refers to it by)."""
    return f"{group}__{feature}"


def feature_type(group: FeatureGroup, feature: Feature) -> FieldType:
    """The type of a feature's value (always nullable: a feature may never have been seen)."""
    if feature.agg in (Agg.count, Agg.approx_distinct):
        return INT.with_nullable(True)
    if feature.agg in (Agg.sum, Agg.mean):
        return FLOAT.with_nullable(True)
    assert feature.expr is not None  # min, max, last and row-level features have an expression
    return feature.expr.result_type.with_nullable(True)


@dataclass(frozen=True)
class StoredFeature:
    column: str
    group: str
    group_version: int
    feature: str
    type: FieldType


@dataclass(frozen=True)
class ModelInput:
    """One column of the model's input matrix. `source` is the `group:feature`, the field, or the DSL text."""

    name: str
    kind: InputKind
    source: str
    type: FieldType

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "source": self.source, "type": self.type.kind.value}


@dataclass(frozen=True)
class ModelInputs:
    inputs: tuple[ModelInput, ...]
    request: Mapping[str, FieldType]
    stored: tuple[StoredFeature, ...]
    _compiled: dict[str, CompiledExpression] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        schema = self.schema
        for item in self.inputs:
            if item.kind == "transform":
                self._compiled[item.name] = compile_expression(item.source, schema)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def schema(self) -> dict[str, FieldType]:
        """What transforms may refer to: the request fields and the stored features."""
        return {**self.request, **{s.column: s.type for s in self.stored}}

    def fields_of(self, name: str) -> set[str]:
        """The columns input `name` is computed from (itself, unless it is a transform)."""
        compiled = self._compiled.get(name)
        return set(compiled.fields) if compiled is not None else {name}

    @property
    def columns_needed(self) -> list[str]:
        """The columns `matrix` reads: request fields and stored features used directly or by a transform."""
        needed: list[str] = []
        for item in self.inputs:
            fields = sorted(self._compiled[item.name].fields) if item.kind == "transform" else [item.name]
            needed += [f for f in fields if f not in needed]
        return needed

    def matrix(self, columns: Mapping[str, Sequence[Any]], n: int) -> np.ndarray:
        """The (n, len(inputs)) float32 input matrix of `n` rows given as columns (a missing column is null)."""
        out = np.empty((n, len(self.inputs)), dtype=np.float32)
        nulls = [None] * n
        for j, item in enumerate(self.inputs):
            if item.kind == "transform":
                values: Sequence[Any] = self._compiled[item.name].evaluate_columns(columns, n)
            else:
                values = columns.get(item.name, nulls)
            out[:, j] = _as_float(values)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [i.to_json() for i in self.inputs],
            "request": {name: t.kind.value for name, t in self.request.items()},
            "stored": [
                {"column": s.column, "group": s.group, "group_version": s.group_version, "feature": s.feature,
                 "type": s.type.kind.value}
                for s in self.stored
            ],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInputs:
        """The inputs a bundle's manifest describes (serving needs no spec file, only the manifest)."""

        def typed(kind: str) -> FieldType:
            return FieldType(Kind(kind), nullable=True)

        stored = tuple(
            StoredFeature(s["column"], s["group"], int(s["group_version"]), s["feature"], typed(s["type"]))
            for s in data["stored"]
        )
        inputs = tuple(ModelInput(i["name"], i["kind"], i["source"], typed(i["type"])) for i in data["inputs"])
        return cls(inputs, {name: typed(kind) for name, kind in data["request"].items()}, stored)


def _as_float(values: Sequence[Any]) -> np.ndarray:
    """Numbers as float64 (bool: 0/1), None (and anything else, if not given as numbers) as NaN."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    if isinstance(values, list):
        try:  # numbers, bools and None (as NaN), in C; the inputs are typed, so this is the usual case
            return np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            pass
    nan = float("nan")
    return np.fromiter(
        (nan if v is None or isinstance(v, str) else float(v) for v in values), dtype=np.float64, count=len(values)
    )
