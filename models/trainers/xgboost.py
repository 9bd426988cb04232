"""XGBoost behind the trainer interface, exported with onnxmltools.

Converter traps handled here: the booster's feature names are dropped (onnxmltools wants `f0…fN`
or none); the base score of XGBoost 3 is carried by the converter; `reg:logistic` is refused (it
converts without its sigmoid, silently wrong) and so is every objective not known to convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.trainers.base import EstimatorModel, Task, Trainer, normalized, param_problems

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


class _Fitted(EstimatorModel):
    @property
    def n_trees(self) -> int:
        return int(self.model.get_booster().num_boosted_rounds())

    def importances(self) -> np.ndarray:
        scores = self.model.get_booster().get_score(importance_type="total_gain")
        gains = np.zeros(self.n_inputs)
        for name, value in scores.items():
            gains[int(name.removeprefix("f"))] = value
        return normalized(gains)


def _convert(model: Any, initial_types: list[Any]) -> Any:
    from onnxmltools import convert_xgboost

    return convert_xgboost(model, initial_types=initial_types)


class XGBoostTrainer(Trainer):
    library = "xgboost"

    def versions(self) -> dict[str, str]:
        import onnxmltools
        import xgboost

        return {"xgboost": xgboost.__version__, "onnxmltools": onnxmltools.__version__}

    def param_problems(self, task: Task, params: Mapping[str, Any]) -> list[str]:
        import xgboost

        known = set(xgboost.XGBRegressor().get_params())
        return param_problems(self.library, params, known=known, owned=_OWNED, objectives=_OBJECTIVES[task],
                              task=task, refused=_REFUSED)  # fmt: skip

    def fit(
        self, task: Task, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any], *, threads: int, seed: int
    ) -> _Fitted:
        import xgboost

        cls = xgboost.XGBClassifier if task == "binary" else xgboost.XGBRegressor
        defaults = {"objective": _OBJECTIVES[task][0], "tree_method": "hist"}
        model = cls(**{**defaults, **params, "n_jobs": threads, "random_state": seed})
        model.fit(x, y)
        # The converter reads feature names f0…fN or none (numpy input gives none; a frame would not).
        model.get_booster().feature_names = None
        return _Fitted(model, task, x.shape[1], _convert)
