"""LightGBM behind the trainer interface, exported with onnxmltools (probabilities as a tensor, no zipmap)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from models.trainers.base import ONNX_INPUT, OnnxExport, Task, Trainer, normalized

__all__ = ["LightGBMTrainer"]

_OBJECTIVES: dict[Task, tuple[str, ...]] = {
    "regression": ("regression", "regression_l1", "huber"),
    "binary": ("binary",),
}
_OWNED = {"n_jobs", "random_state", "verbose", "verbosity"}


class _Fitted:
    def __init__(self, model: Any, task: Task, n_inputs: int) -> None:
        self.model, self.task, self.n_inputs = model, task, n_inputs

    @property
    def n_trees(self) -> int:
        return int(self.model.booster_.num_trees())

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)
        return np.asarray(self.model.predict(x), dtype=np.float64)

    def to_onnx(self) -> OnnxExport:
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = convert_lightgbm(
                self.model, initial_types=[(ONNX_INPUT, FloatTensorType([None, self.n_inputs]))], zipmap=False
            )
        output = onx.graph.output[1 if self.task == "binary" else 0].name
        return OnnxExport(onx.SerializeToString(), output, 1 if self.task == "binary" else 0)

    def importances(self) -> np.ndarray:
        return normalized(np.asarray(self.model.booster_.feature_importance("gain"), dtype=np.float64))


class LightGBMTrainer(Trainer):
    library = "lightgbm"

    def versions(self) -> dict[str, str]:
        import lightgbm
        import onnxmltools

        return {"lightgbm": lightgbm.__version__, "onnxmltools": onnxmltools.__version__}

    def param_problems(self, task: Task, params: Mapping[str, Any]) -> list[str]:
        import lightgbm

        known = set(lightgbm.LGBMRegressor().get_params()) - _OWNED
        problems = [
            f"unknown lightgbm parameter {name!r} (known: {', '.join(sorted(known))})"
            if name not in _OWNED
            else f"{name!r} is set by affresco (threads and seed come from the job), not by the spec"
            for name in params
            if name not in known
        ]
        objective = params.get("objective")
        if objective is not None and objective not in _OBJECTIVES[task]:
            problems.append(
                f"objective {objective!r} cannot be exported for a {task} model; "
                f"expected one of {', '.join(_OBJECTIVES[task])}"
            )
        return problems

    def fit(
        self, task: Task, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any], *, threads: int, seed: int
    ) -> _Fitted:
        import lightgbm

        cls = lightgbm.LGBMClassifier if task == "binary" else lightgbm.LGBMRegressor
        model = cls(**{"objective": _OBJECTIVES[task][0], **params, "n_jobs": threads, "random_state": seed,
                       "verbose": -1})  # fmt: skip
        model.fit(x, y)
        return _Fitted(model, task, x.shape[1])
