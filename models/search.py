"""Hyperparameter trials: the spec's parameters, or a seeded grid or random search over a space.

>>> from models.spec import SearchSpec
>>> space = SearchSpec(strategy="grid", trials=3, seed=1, space={"max_depth": [4, 6], "learning_rate": [0.1, 0.3]})
>>> chosen = trials({"n_estimators": 100}, space)
>>> len(chosen), all(t["n_estimators"] == 100 for t in chosen)
(3, True)
>>> trials({"n_estimators": 100}, space) == trials({"n_estimators": 100}, space)
True
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from models.spec import SearchSpec

__all__ = ["trials"]


def trials(params: Mapping[str, Any], search: SearchSpec | None) -> list[dict[str, Any]]:
    """The parameter sets to try, in a fixed order for a given seed (the base `params` under each)."""
    if search is None:
        return [dict(params)]
    rng = random.Random(search.seed)
    names = sorted(search.space)
    if search.strategy == "grid":
        grid = [
            dict(zip(names, values, strict=True)) for values in itertools.product(*(search.space[n] for n in names))
        ]
        rng.shuffle(grid)
        chosen = grid[: search.trials]
    else:
        chosen = []
        seen: set[str] = set()  # by repr: True == 1 in Python, not as parameters
        size = 1
        for n in names:
            size *= len({repr(v) for v in search.space[n]})  # distinct values (the spec refuses repeats)
        while len(chosen) < min(search.trials, size):
            pick = tuple(rng.choice(search.space[n]) for n in names)
            if repr(pick) not in seen:  # no trial twice: a repeat would only cost time
                seen.add(repr(pick))
                chosen.append(dict(zip(names, pick, strict=True)))
    return [{**params, **t} for t in chosen]
