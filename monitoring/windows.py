"""Accuracy over tumbling event-time windows, per model, version and partition node.

A joined pair belongs to the window its **outcome** time falls in (the moment the truth was
known), so a window is complete once the watermark passes its end — an alert need not wait out
the whole horizon. Each window keeps its pairs' labels and predictions and, when it closes,
computes the metrics with `models.metrics` — the very functions training reports with, equal to
scikit-learn's — for three scopes: the model, each version, and each (version, partition node).
A metric undefined on a window (the AUC of pairs of one class) is left out. A binary model's
windows also carry its calibration: `calibration_error` (the pair-weighted mean gap between the
predicted probability and the observed rate over ten reliability bins) and, per non-empty bin
`[low, low + 0.1)`, `reliability:<low>` (the observed positive rate), `reliability_mean:<low>`
(the mean predicted probability) and `reliability_count:<low>` — scikit-learn's
`calibration_curve` with its counts.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np

from models.metrics import metrics_for, reliability_bins
from streams.events.platform import MonitoringMetric

__all__ = ["JoinedPair", "Scope", "TumblingWindows", "WindowKey", "WindowMetric", "WindowedMetrics"]

Scope = Literal["model", "version", "partition"]
WindowKey = tuple[int, int, Scope, str, int | None, str | None]  # length, start, scope, model, version, partition
S = TypeVar("S")


class TumblingWindows(Generic[S]):
    """Open windows of each length per (model, version, partition node), the one rule of closing
    them, and the coarser scopes rolled up from them as they close (accuracy and traffic).

    An item is kept once per window length, in its partition node's window; when a span closes, the
    model's and each version's window of it are merged from its nodes' windows (`merge`), so an
    item costs one append per length, not one per scope. A window closes once the watermark reaches
    its end and is then published once: an item for a window already published is counted (`late`)
    and kept out, since publishing that window again would count its items twice.
    """

    def __init__(
        self, windows_ms: tuple[int, ...], new: Callable[[], S], merge: Callable[[list[S]], S],
        rollups: tuple[Scope, ...] = ("model", "version"),
    ) -> None:  # fmt: skip
        self.windows_ms, self.new, self.merge, self.rollups = windows_ms, new, merge, rollups
        self.open: dict[WindowKey, S] = {}  # partition-scope windows only
        self.closed_until: int | None = None  # windows ending at or before this were published
        self.late = 0  # items that came for a window already published
        # (end, key) of every open window: `ready` runs on every input, so it must not look at them all.
        self._ends: list[tuple[int, WindowKey]] = []

    @property
    def next_end(self) -> int | None:
        """The end of the earliest open window (None: none is open)."""
        return self._ends[0][0] if self._ends else None

    def windows_of(self, time_ms: int, model: str, version: int, partition: str) -> list[S]:
        """The open windows (made if new) of a partition node that an item at `time_ms` belongs to,
        one per length."""
        found, late = [], False
        for length in self.windows_ms:
            start = time_ms - time_ms % length
            if self.closed_until is not None and start + length <= self.closed_until:
                late = True
                continue
            key: WindowKey = (length, start, "partition", model, version, partition)
            window = self.open.get(key)
            if window is None:
                window = self.open[key] = self.new()
                heapq.heappush(self._ends, (start + length, key))
            found.append(window)
        self.late += late
        return found

    def ready(self, watermark_ms: int | None) -> list[tuple[WindowKey, S]]:
        """Take every window ending at or before `watermark_ms` (None: all), with the scopes rolled
        up from them, in time order."""
        if watermark_ms is None:
            keys = list(self.open)
            self._ends = []
        else:
            keys = []
            while self._ends and self._ends[0][0] <= watermark_ms:
                keys.append(heapq.heappop(self._ends)[1])
        # Everything up to here is published now: an item for it later is late, never a second window.
        until = watermark_ms if watermark_ms is not None else max((k[1] + k[0] for k in keys), default=None)
        if until is not None:
            self.closed_until = max(self.closed_until or until, until)
        taken = {key: self.open.pop(key) for key in sorted(keys)}
        rolled: dict[WindowKey, list[S]] = {}
        for (length, start, _, model, version, _), window in taken.items():
            for scope in self.rollups:
                rolled.setdefault((length, start, scope, model, None if scope == "model" else version, None),
                                  []).append(window)  # fmt: skip
        out = [*taken.items(), *((key, self.merge(parts)) for key, parts in rolled.items())]
        return sorted(out, key=lambda item: _order(item[0]))

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        del state["_ends"]  # rebuilt from the open windows: a smaller snapshot
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._ends = [(key[1] + key[0], key) for key in self.open]
        heapq.heapify(self._ends)


def _order(key: WindowKey) -> tuple[object, ...]:
    length, start, scope, model, version, partition = key
    return length, start, scope, model, -1 if version is None else version, partition or ""


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

    @staticmethod
    def merged(parts: list[_Window]) -> _Window:
        return _Window([y for w in parts for y in w.labels], [p for w in parts for p in w.predictions])


class WindowedMetrics:
    def __init__(self, task: str, windows_ms: tuple[int, ...]) -> None:
        self.task = task  # regression or binary
        self.windows = TumblingWindows(windows_ms, _Window, _Window.merged)

    @property
    def open(self) -> dict[WindowKey, _Window]:
        return self.windows.open

    @property
    def late_pairs(self) -> int:
        """Pairs for a window already published: counted, not added."""
        return self.windows.late

    def add(self, pair: JoinedPair) -> None:
        for window in self.windows.windows_of(pair.outcome_time_ms, pair.model, pair.version, pair.partition):
            window.labels.append(pair.label)
            window.predictions.append(pair.prediction)

    def close(self, watermark_ms: int | None = None) -> list[WindowMetric]:
        """The metrics of every window ending at or before `watermark_ms` (None: all), in time order."""
        return [m for key, window in self.windows.ready(watermark_ms) for m in self._metrics(key, window)]

    def _metrics(self, key: WindowKey, window: _Window) -> Iterable[WindowMetric]:
        length, start, scope, model, version, partition = key
        y, p = np.asarray(window.labels), np.asarray(window.predictions)
        values = {"count": float(len(y)), **metrics_for(self.task, y, p)}
        if self.task == "binary" and len(y):
            values |= _calibration(y, p)
        for metric, value in values.items():
            if value != value:
                continue  # undefined here (AUC of one class): not published
            yield WindowMetric(scope, model, version, partition, length, start, metric, value, len(y))


def _calibration(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    bins = reliability_bins(y, p)
    out = {"calibration_error": sum(b["count"] * abs(b["observed_rate"] - b["mean_predicted"]) for b in bins) / len(y)}
    for b in bins:
        low = f"{b['low']:.1f}"
        out |= {f"reliability:{low}": b["observed_rate"], f"reliability_mean:{low}": b["mean_predicted"],
                f"reliability_count:{low}": float(b["count"])}  # fmt: skip
    return out
