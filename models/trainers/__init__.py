"""Training libraries behind one interface (`Trainer`); the only place xgboost and lightgbm are imported.

>>> sorted(TRAINERS)
['lightgbm', 'xgboost']
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from models.spec import SearchSpec
from models.trainers.base import ONNX_INPUT, FittedModel, OnnxExport, Task, Trainer

__all__ = ["ONNX_INPUT", "TRAINERS", "FittedModel", "OnnxExport", "Task", "Trainer", "get_trainer", "trainer_problems"]

#: library name -> "module:class", imported only when that library is used.
TRAINERS = {
    "xgboost": "models.trainers.xgboost:XGBoostTrainer",
    "lightgbm": "models.trainers.lightgbm:LightGBMTrainer",
}


def get_trainer(library: str) -> Trainer:
    if library not in TRAINERS:
        msg = f"unknown trainer library {library!r}; expected one of {', '.join(sorted(TRAINERS))}"
        raise ValueError(msg)
    module, _, cls = TRAINERS[library].partition(":")
    trainer: Trainer = getattr(importlib.import_module(module), cls)()
    return trainer


def trainer_problems(
    library: str, task: Task, params: Mapping[str, Any], search: SearchSpec | None
) -> list[tuple[str, str]]:
    """Every problem of a trainer section as (key of `trainer` it is about, message)."""
    try:
        trainer = get_trainer(library)
    except ValueError as exc:
        return [("library", str(exc))]
    except ImportError as exc:
        return [("library", f"{library} is not installed ({exc.name}); install affresco[ml]")]
    problems = [("params", p) for p in trainer.param_problems(task, params)]
    if search is not None:
        # Every value of the space must be acceptable as a parameter of its own.
        for name, values in search.space.items():
            for value in values:
                problems += [("search", f"space.{name}: {p}") for p in trainer.param_problems(task, {name: value})]
    return list(dict.fromkeys(problems))
