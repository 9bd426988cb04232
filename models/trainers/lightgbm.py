"""LightGBM behind the trainer interface, exported with onnxmltools (probabilities as a tensor, no zipmap)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.trainers.base import EstimatorModel, Task, Trainer, normalized, param_problems

__all__ = ["LightGBMTrainer"]

_OBJECTIVES: dict[Task, tuple[str, ...]] = {
    "regression": ("regression", "regression_l1", "huber"),
    "binary": ("binary",),
}
_OWNED = {"n_jobs", "random_state", "verbose", "verbosity"}


class _Fitted(EstimatorModel):
    @property
    def n_trees(self) -> int:
        return int(self.model.booster_.num_trees())

    def importances(self) -> np.ndarray:
        return normalized(np.asarray(self.model.booster_.feature_importance("gain"), dtype=np.float64))


def _convert(model: Any, initial_types: list[Any]) -> Any:
    from onnxmltools import convert_lightgbm

    return convert_lightgbm(model, initial_types=initial_types, zipmap=False)


class LightGBMTrainer(Trainer):
    library = "lightgbm"

    def versions(self) -> dict[str, str]:
        import lightgbm
        import onnxmltools

        return {"lightgbm": lightgbm.__version__, "onnxmltools": onnxmltools.__version__}

    def param_problems(self, task: Task, params: Mapping[str, Any]) -> list[str]:
        import lightgbm

        known = set(lightgbm.LGBMRegressor().get_params())
        return param_problems(self.library, params, known=known, owned=_OWNED, objectives=_OBJECTIVES[task], task=task)

    def fit(
        self, task: Task, x: np.ndarray, y: np.ndarray, params: Mapping[str, Any], *, threads: int, seed: int
    ) -> _Fitted:
        import lightgbm

        cls = lightgbm.LGBMClassifier if task == "binary" else lightgbm.LGBMRegressor
        model = cls(**{"objective": _OBJECTIVES[task][0], **params, "n_jobs": threads, "random_state": seed,
                       "verbose": -1})  # fmt: skip
        model.fit(x, y)
        return _Fitted(model, task, x.shape[1], _convert)
