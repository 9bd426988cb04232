"""Standardized metrics, the same for every model, node and baseline (equal to scikit-learn's).

Regression: RMSE, MAE, R², MAPE (|y| floored at machine epsilon, as scikit-learn), bias
(mean of prediction - label: positive means the model over-predicts).
Binary: AUC (ties averaged), log loss (probabilities clipped to [eps, 1 - eps]), accuracy at 0.5,
Brier score.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LOWER_IS_BETTER", "PRIMARY", "binary_metrics", "metrics_for", "regression_metrics", "reliability_bins"]

PRIMARY = {"regression": "rmse", "binary": "auc"}
LOWER_IS_BETTER = {"rmse": True, "mae": True, "mape": True, "log_loss": True, "brier": True,
                   "auc": False, "accuracy": False, "r2": False}  # fmt: skip


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not len(y):
        return {}
    err = p - y
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    # A constant label: 1 if predicted exactly, else 0 (scikit-learn's convention).
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float(ss_res == 0)
    eps = np.finfo(np.float64).eps
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "r2": r2,
        "mape": float(np.mean(np.abs(err) / np.maximum(np.abs(y), eps))),
        "bias": float(np.mean(err)),
    }


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")  # undefined with one class (scikit-learn raises)
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    ranks = np.empty(len(p), dtype=np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if not len(y):
        return {}
    eps = np.finfo(np.float64).eps
    clipped = np.clip(p, eps, 1 - eps)
    return {
        "auc": _auc(y, p),
        "log_loss": float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "brier": float(np.mean((p - y) ** 2)),
    }


def reliability_bins(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Calibration: `bins` equal-width probability bins; each non-empty one with its count, mean
    predicted probability and observed positive rate (scikit-learn's `calibration_curve`, uniform)."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], p)  # p on an inner edge belongs to the lower bin, as in scikit-learn
    counts = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    observed = np.bincount(index, weights=y, minlength=bins)
    return [{"low": float(edges[k]), "high": float(edges[k + 1]), "count": int(counts[k]),
             "mean_predicted": float(predicted[k] / counts[k]), "observed_rate": float(observed[k] / counts[k])}
            for k in range(bins) if counts[k]]  # fmt: skip


def metrics_for(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return binary_metrics(y, p) if task == "binary" else regression_metrics(y, p)
