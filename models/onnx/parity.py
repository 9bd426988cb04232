"""The parity gate: an export is refused when ONNX Runtime and the native model disagree.

A row passes when |onnx - native| <= 1e-4 (absolute, for values near zero) or
<= 1e-5 * |native| (relative). Tree ensembles summed in float32 by ONNX Runtime differ from the
libraries' own sums by rounding only; anything beyond is a conversion bug (an objective converted
without its link function, a lost base score).
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
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(a), np.finfo(np.float64).tiny)
    failing = ~((diff <= ABS_TOLERANCE) | (diff <= REL_TOLERANCE * np.abs(a))) | np.isnan(diff)
    worst = int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)))
    report = ParityReport(len(a), float(np.nanmax(diff)), float(np.nanmax(rel)), int(failing.sum()), worst,
                          float(a[worst]), float(b[worst]))  # fmt: skip
    if not report.ok:
        msg = (
            f"{what}: ONNX export refused, its predictions differ from the native model's on "
            f"{report.failing_rows:,} of {report.rows:,} held-out rows (max abs diff {report.max_abs_diff:.3g}, "
            f"max rel diff {report.max_rel_diff:.3g}; row {worst}: native {report.native:.6g}, ONNX {report.onnx:.6g}; "
            f"tolerance {REL_TOLERANCE:g} relative or {ABS_TOLERANCE:g} absolute)"
        )
        raise ExportError(msg)
    return report
