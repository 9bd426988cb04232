"""Accuracy over tumbling event-time windows, per model, version and partition node.

A joined pair belongs to the window its **outcome** time falls in (the moment the truth was
known), so a window is complete once the watermark passes its end — an alert need not wait out
the whole horizon. Each window keeps its pairs' labels and predictions and, when it closes,
computes the metrics with `models.metrics` — the very functions training reports with, equal to
scikit-learn's — for three scopes: the model, each version, and each (version, partition node).
A metric undefined on a window (the AUC of pairs of one class) is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.metrics import metrics_for
from streams.events.platform import MonitoringMetric

__all__ = ["JoinedPair", "Scope", "WindowMetric", "WindowedMetrics"]

Scope = Literal["model", "version", "partition"]


@dataclass(frozen=True)
class JoinedPair:
    model: str
    version: int
    partition: str
    outcome_time_ms: int
    prediction: float
    label: float


@dataclass(frozen=True)
class WindowMetric:
    scope: Scope
    model: str
    version: int | None
    partition: str | None
    window_ms: int
    window_start: int
    metric: str
    value: float
    count: int

    @property
    def window_end(self) -> int:
        return self.window_start + self.window_ms

    def event(self) -> MonitoringMetric:
        """The `MonitoringMetric` event on `affresco.monitoring` (its time: the window's end)."""
        return MonitoringMetric(
            event_time=self.window_end, model=self.model, model_version=self.version, partition=self.partition,
            metric=self.metric, value=self.value, window_start=self.window_start, window_end=self.window_end,
            count=self.count,
        )  # fmt: skip


@dataclass
class _Window:
    labels: list[float] = field(default_factory=list)
    predictions: list[float] = field(default_factory=list)


@dataclass
class WindowedMetrics:
    task: str  # regression or binary
    windows_ms: tuple[int, ...]
    open: dict[tuple[int, int, Scope, str, int | None, str | None], _Window] = field(default_factory=dict)
    closed_until: int | None = None  # windows ending at or before this were published
    late_pairs: int = 0  # pairs for a window already published: counted, not added

    def add(self, pair: JoinedPair) -> None:
        scopes: tuple[tuple[Scope, int | None, str | None], ...] = (
            ("model", None, None), ("version", pair.version, None), ("partition", pair.version, pair.partition),
        )  # fmt: skip
        late = False
        for length in self.windows_ms:
            start = pair.outcome_time_ms - pair.outcome_time_ms % length
            if self.closed_until is not None and start + length <= self.closed_until:
                late = True  # this window was published already: publishing it again would double-count
                continue
            for scope, version, partition in scopes:
                window = self.open.setdefault((length, start, scope, pair.model, version, partition), _Window())
                window.labels.append(pair.label)
                window.predictions.append(pair.prediction)
        self.late_pairs += late

    def close(self, watermark_ms: int | None = None) -> list[WindowMetric]:
        """The metrics of every window ending at or before `watermark_ms` (None: all), in time order."""
        ready = sorted(k for k in self.open if watermark_ms is None or k[1] + k[0] <= watermark_ms)
        if watermark_ms is not None:
            self.closed_until = max(self.closed_until or watermark_ms, watermark_ms)
        return [m for key in ready for m in self._metrics(key, self.open.pop(key))]

    def _metrics(
        self, key: tuple[int, int, Scope, str, int | None, str | None], window: _Window
    ) -> Iterable[WindowMetric]:
        length, start, scope, model, version, partition = key
        y, p = np.asarray(window.labels), np.asarray(window.predictions)
        values = {"count": float(len(y)), **metrics_for(self.task, y, p)}
        for metric, value in values.items():
            if value != value:
                continue  # undefined here (AUC of one class): not published
            yield WindowMetric(scope, model, version, partition, length, start, metric, value, len(y))
