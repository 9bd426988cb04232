"""XGBoost behind the trainer interface, exported with onnxmltools.

Converter traps handled here: the booster's feature names are dropped (onnxmltools wants `f0…fN`
or none); the base score of XGBoost 3 is carried by the converter; `reg:logistic` is refused (it
converts without its sigmoid, silently wrong) and so is every objective not known to convert.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from models.trainers.base import ONNX_INPUT, OnnxExport, Task, Trainer, normalized

__all__ = ["XGBoostTrainer"]

_OBJECTIVES: dict[Task, tuple[str, ...]] = {
    "regression": ("reg:squarederror", "reg:pseudohubererror", "reg:absoluteerror"),
    "binary": ("binary:logistic",),
}
_REFUSED = {
    "reg:logistic": "it converts to ONNX without its sigmoid (predictions silently wrong); use task: binary",
    "binary:logitraw": "it predicts margins, not probabilities; use binary:logistic",
}
_OWNED = {"n_jobs", "nthread", "random_state", "seed", "feature_names", "enable_categorical"}


class _Fitted:
    def __init__(self, model: Any, task: Task, n_inputs: int) -> None:
        self.model, self.task, self.n_inputs = model, task, n_inputs

    @property
    def n_trees(self) -> int:
        return int(self.model.get_booster().num_boosted_rounds())

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return np.asarray(self.model.predict_proba(x)[:, 1], dtype=np.float64)
        return np.asarray(self.model.predict(x), dtype=np.float64)

    def to_onnx(self) -> OnnxExport:
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        self.model.get_booster().feature_names = None  # the converter reads f0…fN or nothing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = convert_xgboost(self.model, initial_types=[(ONNX_INPUT, FloatTensorType([None, self.n_inputs]))])
        output = onx.graph.output[1 if self.task == "binary" else 0].name
        return OnnxExport(onx.SerializeToString(), output, 1 if self.task == "binary" else 0)

    def importances(self) -> np.ndarray:
        scores = self.model.get_booster().get_score(importance_type="total_gain")
        gains = np.zeros(self.n_inputs)
        for name, value in scores.items():
            gains[int(name.removeprefix("f"))] = value
        return normalized(gains)


class XGBoostTrainer(Trainer):
    library = "xgboost"

    def versions(self) -> dict[str, str]:
        import onnxmltools
        import xgboost

        return {"xgboost": xgboost.__version__, "onnxmltools": onnxmltools.__version__}

    def param_problems(self, task: Task, params: Mapping[str, Any]) -> list[str]:
        import xgboost

        known = set(xgboost.XGBRegressor().get_params()) - _OWNED
        problems = [
            f"unknown xgboost parameter {name!r} (known: {', '.join(sorted(known))})"
            if name not in _OWNED
            else f"{name!r} is set by affresco (threads and seed come from the job), not by the spec"
            for name in params
            if name not in known
        ]
        objective = params.get("objective")
        if objective is not None:
            if objective in _REFUSED:
                problems.append(f"objective {objective!r} is refused: {_REFUSED[objective]}")
            elif objective not in _OBJECTIVES[task]:
                problems.append(
                    f"objective {objective!r} cannot be exported for a {task} model; "
                    f"expected one of {', '.join(_OBJECTIVES[task])}"
                )
        return problems

    def fit(
        self, task: Task, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any], *, threads: int, seed: int
    ) -> _Fitted:
        import xgboost

        cls = xgboost.XGBClassifier if task == "binary" else xgboost.XGBRegressor
        defaults = {"objective": _OBJECTIVES[task][0], "tree_method": "hist"}
        model = cls(**{**defaults, **params, "n_jobs": threads, "random_state": seed})
        model.fit(x, y)
        return _Fitted(model, task, x.shape[1])
