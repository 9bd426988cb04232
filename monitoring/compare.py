"""Champion vs challenger: each version's accuracy per partition node, over the same windows.

From the published `MonitoringMetric` events: per (partition, metric, version), the mean of the
window values weighted by their pairs. Only windows both versions have values for are counted,
so two versions are compared on the same stretch of outcomes (the challenger logs predictions
of its own on the champion's requests, and monitoring pairs both with each outcome).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from models.metrics import LOWER_IS_BETTER
from streams.events.platform import MonitoringMetric

__all__ = ["Comparison", "compare_versions"]

ACCURACY = ("mae", "rmse", "bias", "mape", "auc", "log_loss", "brier", "accuracy")


@dataclass(frozen=True)
class Comparison:
    partition: str
    metric: str
    values: dict[int, float]  # version -> weighted mean over the shared windows
    pairs: dict[int, int]  # version -> pairs in those windows
    windows: int

    @property
    def winner(self) -> int | None:
        """The better version (bias: the one closer to 0); None for one version or a tie."""
        if len(self.values) < 2:
            return None

        def badness(version: int) -> float:
            value = self.values[version]
            if self.metric == "bias":
                return abs(value)
            return value if LOWER_IS_BETTER.get(self.metric, True) else -value

        ranked = sorted(self.values, key=badness)
        return None if badness(ranked[0]) == badness(ranked[1]) else ranked[0]


def compare_versions(metrics: Sequence[MonitoringMetric], metric_names: Sequence[str] = ACCURACY) -> list[Comparison]:
    """Per partition node and accuracy metric, every version side by side on their shared windows."""
    cells: dict[tuple[str, str], dict[tuple[int, int], dict[int, tuple[float, int]]]] = defaultdict(dict)
    for m in metrics:
        if m.partition is None or m.model_version is None or m.metric not in metric_names:
            continue
        window = (m.window_start, m.window_end)
        cells[(m.partition, m.metric)].setdefault(window, {})[m.model_version] = (m.value, m.count)
    out = []
    for (partition, metric), windows in sorted(cells.items()):
        versions = sorted({v for by_version in windows.values() for v in by_version})
        shared = [w for w in windows.values() if len(w) == len(versions)]
        if not shared:
            continue
        values, pairs = {}, {}
        for v in versions:
            total = sum(w[v][1] for w in shared)
            pairs[v] = total
            values[v] = sum(w[v][0] * w[v][1] for w in shared) / total if total else float("nan")
        out.append(Comparison(partition, metric, values, pairs, len(shared)))
    return out
