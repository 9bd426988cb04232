"""Drift of live values against the training distribution a bundle stores (`models.distributions`).

- **PSI** (population stability index) over the training decile bins: Σ (live - train) · ln(live /
  train), each share floored at `PSI_FLOOR` so an empty bin does not make it infinite. Rules of
  thumb: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a large one.
- **KS**: the two-sample Kolmogorov-Smirnov statistic (the largest gap between the two empirical
  CDFs) between the stored training sample and the live values — scipy's `ks_2samp` statistic on
  the same two samples.

Nulls are left out of both (their share is a metric of its own: missing features).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.distributions import bin_counts

__all__ = ["PSI_FLOOR", "ks_statistic", "psi"]

PSI_FLOOR = 1e-4


def psi(distribution: Mapping[str, Any], live: np.ndarray) -> float | None:
    """PSI of `live` against a stored numeric distribution; None without live or training values."""
    values = _present(live)
    edges, shares = distribution.get("edges") or [], distribution.get("shares")
    if not len(values) or not shares:
        return None
    counts = bin_counts(edges, values)
    expected = np.maximum(np.asarray(shares, dtype=np.float64), PSI_FLOOR)
    actual = np.maximum(counts / len(values), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def ks_statistic(distribution: Mapping[str, Any], live: np.ndarray) -> float | None:
    """The KS statistic between the stored training sample and `live`; None without either."""
    values = _present(live)
    sample = np.asarray(distribution.get("sample") or [], dtype=np.float64)
    if not len(values) or not len(sample):
        return None
    return two_sample_ks(sample, values)


def two_sample_ks(a: np.ndarray, b: np.ndarray) -> float:
    """sup |F_a - F_b| over every value of either sample (both empirical CDFs right-continuous)."""
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _present(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[~np.isnan(x)]
