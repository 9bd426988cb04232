"""The one train/validation split of a training set: by time, never by random rows.

Validation is the latest `fraction` of the label time range: every row at or after the cut-off is
held out, every row before it trains. So no training row is later than any validation row, and a
model is judged on the future it did not see, as it will be in production. Computed once per
training set; every partition node's rows are an index into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TimeSplit"]


@dataclass(frozen=True)
class TimeSplit:
    cutoff_ms: int
    fraction: float
    train: np.ndarray  # bool mask over the rows
    from_ms: int
    to_ms: int

    @classmethod
    def of(cls, times: np.ndarray, fraction: float) -> TimeSplit:
        if not len(times):
            msg = "cannot split an empty training set"
            raise ValueError(msg)
        first, last = int(times.min()), int(times.max())
        cutoff = first + math.ceil((1.0 - fraction) * (last - first))
        # A range of one instant: cutoff == first, everything validates and nothing trains (and the
        # job refuses to start), rather than a model judged on the rows it was trained on.
        return cls(cutoff, fraction, times < cutoff, first, last)

    @property
    def validation(self) -> np.ndarray:
        return ~self.train

    def to_json(self) -> dict[str, int | float]:
        rows = {"rows_train": int(self.train.sum()), "rows_validation": int(self.validation.sum())}
        return {"cutoff_ms": self.cutoff_ms, "fraction": self.fraction, **rows, "from_ms": self.from_ms,
                "to_ms": self.to_ms}  # fmt: skip
