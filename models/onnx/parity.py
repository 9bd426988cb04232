"""The parity gate: an export is refused when ONNX Runtime and the native model disagree.

A row passes when |onnx - native| <= 1e-4 (absolute, for values near zero) or
<= 1e-5 * max(|native|, scale) (relative), where `scale` is the mean |native| prediction of the
sample. Tree ensembles summed in float32 by ONNX Runtime differ from the libraries' own sums by
rounding only, and that rounding is at the magnitude of the terms summed (a base score of 2,576
plus trees adding -2,385 round like 2,576, not like the 191 they give): a row whose value is small
next to the model's usual output is judged at the model's scale. Anything beyond is a conversion
bug (an objective converted without its link function, a lost base score), and fails by orders of
magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.exceptions import ExportError

__all__ = ["ABS_TOLERANCE", "REL_TOLERANCE", "ParityReport", "check_parity"]

REL_TOLERANCE = 1e-5
ABS_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_abs_diff: float
    max_rel_diff: float
    failing_rows: int
    worst_row: int
    native: float
    onnx: float

    @property
    def ok(self) -> bool:
        return self.failing_rows == 0

    def to_json(self) -> dict[str, float | int]:
        return {"rows": self.rows, "max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff,
                "failing_rows": self.failing_rows}  # fmt: skip


def check_parity(native: np.ndarray, onnx: np.ndarray, *, what: str) -> ParityReport:
    """Compare predictions on the same rows; raise `ExportError` with the figures when they differ."""
    a, b = np.asarray(native, dtype=np.float64), np.asarray(onnx, dtype=np.float64)
    if a.shape != b.shape or not len(a):
        msg = f"{what}: parity needs the same non-empty rows, got {a.shape} native and {b.shape} ONNX predictions"
        raise ExportError(msg)
    diff = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
    scale = float(np.nanmean(np.abs(a))) if np.isfinite(a).any() else 0.0
    magnitude = np.maximum(np.abs(a), scale)
    rel = diff / np.maximum(magnitude, np.finfo(np.float64).tiny)
    tolerance = np.maximum(ABS_TOLERANCE, REL_TOLERANCE * magnitude)
    failing = ~(diff <= tolerance)  # NaN on one side only fails too
    # The row named is the one furthest beyond its tolerance (a passing row is never named).
    excess = np.where(np.isnan(diff), np.inf, diff / tolerance)
    worst = int(np.argmax(excess))
    report = ParityReport(len(a), float(np.max(diff)), float(np.max(rel)), int(failing.sum()), worst,
                          float(a[worst]), float(b[worst]))  # fmt: skip
    if not report.ok:
        msg = (
            f"{what}: ONNX export refused, its predictions differ from the native model's on "
            f"{report.failing_rows:,} of {report.rows:,} held-out rows (max abs diff {report.max_abs_diff:.3g}, "
            f"max rel diff {report.max_rel_diff:.3g}; worst row {worst}: native {report.native:.6g}, "
            f"ONNX {report.onnx:.6g}; tolerance {REL_TOLERANCE:g} relative to max(|value|, {scale:.4g}) "
            f"or {ABS_TOLERANCE:g} absolute)"
        )
        raise ExportError(msg)
    return report
