"""The interface every training library plugs in behind: fit, predict, export to ONNX, importances.

Export, parity, bundles and serving only see this interface and ONNX files, so a library plugs in
by adding a module here and a line in `models.trainers.TRAINERS`, and touches nothing else.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

__all__ = [
    "ONNX_INPUT",
    "EstimatorModel",
    "FittedModel",
    "OnnxExport",
    "Task",
    "Trainer",
    "normalized",
    "param_problems",
]

Task = Literal["regression", "binary"]
ONNX_INPUT = "input"
"""The name of every exported model's one input: a float32 (rows, inputs) tensor."""


@dataclass(frozen=True)
class OnnxExport:
    """A serialized ONNX model and where its prediction is: output `output`, column `column`.

    Regression models give (rows, 1) values; binary classifiers (rows, 2) probabilities, column 1
    being P(label = 1).
    """

    model: bytes
    output: str
    column: int


class FittedModel(Protocol):
    @property
    def n_trees(self) -> int: ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The prediction per row: a value (regression) or P(label = 1) (binary), as float64."""
        ...

    def to_onnx(self) -> OnnxExport: ...

    def importances(self) -> np.ndarray:
        """Gain per input column, normalized to sum to 1 (zeros when the model has no split)."""
        ...


class Trainer(ABC):
    library: str

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """The versions of the libraries a bundle depends on (for the manifest)."""

    @abstractmethod
    def param_problems(self, task: Task, params: Mapping[str, Any]) -> list[str]:
        """What is wrong with `params` for `task` (unknown names, objectives that cannot be exported)."""

    @abstractmethod
    def fit(
        self, task: Task, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any], *, threads: int, seed: int
    ) -> FittedModel: ...


def normalized(gains: np.ndarray) -> np.ndarray:
    total = float(gains.sum())
    return gains / total if total > 0 else np.zeros_like(gains)


class EstimatorModel:
    """A fitted scikit-learn-style estimator (XGBoost's and LightGBM's wrappers), exported by `convert`.

    `convert(model, initial_types)` is the library's onnxmltools converter. Regression models give
    their first output; classifiers their probabilities (second output), column 1.
    """

    def __init__(self, model: Any, task: Task, n_inputs: int, convert: Callable[[Any, list[Any]], Any]) -> None:
        self.model, self.task, self.n_inputs, self._convert = model, task, n_inputs, convert

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)
        return np.asarray(self.model.predict(x), dtype=np.float64)

    def to_onnx(self) -> OnnxExport:
        from onnxmltools.convert.common.data_types import FloatTensorType

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = self._convert(self.model, [(ONNX_INPUT, FloatTensorType([None, self.n_inputs]))])
        # Converted classifiers output (label, probabilities): P(label = 1) is column 1 of the second.
        output, column = (1, 1) if self.task == "binary" else (0, 0)
        return OnnxExport(onx.SerializeToString(), onx.graph.output[output].name, column)


def param_problems(
    library: str,
    params: Mapping[str, Any],
    *,
    known: set[str],
    owned: set[str],
    objectives: tuple[str, ...],
    task: Task,
    refused: Mapping[str, str] | None = None,
) -> list[str]:
    """Unknown parameters, parameters affresco sets itself, and objectives that cannot be exported."""
    problems = [
        f"{name!r} is set by affresco (threads and seed come from the job), not by the spec"
        if name in owned
        else f"unknown {library} parameter {name!r} (known: {', '.join(sorted(known))})"
        for name in params
        if name not in known or name in owned
    ]
    objective = params.get("objective")
    if objective is not None:
        if refused and objective in refused:
            problems.append(f"objective {objective!r} is refused: {refused[objective]}")
        elif objective not in objectives:
            expected = ", ".join(objectives)
            problems.append(
                f"objective {objective!r} cannot be exported for a {task} model; expected one of {expected}"
            )
    return problems
