"""The interface every training library plugs in behind: fit, predict, export to ONNX, importances.

Export, parity, bundles and serving only see this interface and ONNX files, so a library plugs in
by adding a module here and a line in `models.trainers.TRAINERS`, and touches nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

__all__ = ["ONNX_INPUT", "FittedModel", "OnnxExport", "Task", "Trainer", "normalized"]

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
