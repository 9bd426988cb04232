"""A trainer whose models on small nodes predict natively what their ONNX export does not (for the parity gate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.trainers.base import Task
from models.trainers.xgboost import XGBoostTrainer

SMALL = 10_000


class _OffByFive:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.inner.predict(x)) + 5.0  # the native side drifts: ONNX no longer agrees


class SmallNodesBreakTrainer(XGBoostTrainer):
    def fit(
        self, task: Task, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any], *, threads: int, seed: int
    ) -> Any:
        fitted = super().fit(task, x, y, params, threads=threads, seed=seed)
        return _OffByFive(fitted) if len(x) < SMALL else fitted
