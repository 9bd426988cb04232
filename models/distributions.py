"""Each input's training distribution, stored in the manifest for drift monitoring.

Numbers: decile bin edges of the training values and the share of rows in each bin (the bins are
`(-inf, e1], (e1, e2], …, (ek, inf)`), the null share, mean and range, and `SAMPLE_POINTS`
evenly spaced quantiles (`sample`: the training distribution's shape, for the KS statistic, to
within 1/`SAMPLE_POINTS`). Categories (partition columns): the share of each of the most frequent
values. PSI and KS against live traffic are computed from these (`monitoring.drift`), without the
training set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bin_counts", "categorical_distribution", "numeric_distribution"]

QUANTILES = np.linspace(0.1, 0.9, 9)
SAMPLE_POINTS = 200
TOP_CATEGORIES = 50


def numeric_distribution(values: np.ndarray) -> dict[str, Any]:
    x = np.asarray(values, dtype=np.float64)
    present = x[~np.isnan(x)]
    out: dict[str, Any] = {"kind": "numeric", "rows": len(x), "null_share": float(1 - len(present) / max(len(x), 1))}
    if not len(present):
        return {**out, "edges": [], "shares": []}
    edges = np.unique(np.quantile(present, QUANTILES))
    counts = bin_counts(edges, present)
    sample = np.quantile(present, (np.arange(SAMPLE_POINTS) + 0.5) / SAMPLE_POINTS)
    return {**out, "edges": edges.tolist(), "shares": (counts / len(present)).tolist(),
            "mean": float(present.mean()), "min": float(present.min()), "max": float(present.max()),
            "sample": sample.tolist()}  # fmt: skip


def bin_counts(edges: Sequence[float] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many `values` fall in each bin `(-inf, e1], (e1, e2], …, (ek, inf)`: training's bins and drift's."""
    return np.bincount(np.searchsorted(np.asarray(edges), values, side="left"), minlength=len(edges) + 1)


def categorical_distribution(values: Sequence[Any]) -> dict[str, Any]:
    counts = Counter(None if v is None else str(v) for v in values)
    nulls = counts.pop(None, 0)
    total = max(len(values), 1)
    top = counts.most_common(TOP_CATEGORIES)
    other = sum(counts.values()) - sum(c for _, c in top)
    return {"kind": "categorical", "rows": len(values), "null_share": nulls / total,
            "shares": {k: c / total for k, c in top}, "other_share": other / total}  # fmt: skip
