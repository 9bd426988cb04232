"""Alert rules judged on closed windows: an alert fires once while its metric stays past the
threshold, and is resolved when the metric comes back.

Each rule watches its metric over its window length, at its scope: one state per (rule, version,
partition) the scope distinguishes. A window with fewer pairs than the rule's `min_count` is not
judged (too few to say anything) and leaves the state as it was. The state is plain data, so the
monitor snapshots it with the rest and a restart neither repeats nor forgets an alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from monitoring.spec import AlertRule
from monitoring.windows import WindowMetric
from streams.events.platform import Alert

__all__ = ["AlertBook", "AlertChange"]


@dataclass(frozen=True)
class AlertChange:
    state: Literal["firing", "resolved"]
    rule: AlertRule
    metric: WindowMetric

    @property
    def message(self) -> str:
        where = self.metric.model
        if self.metric.version is not None:
            where += f" v{self.metric.version}"
        if self.metric.partition is not None:
            where += f" {self.metric.partition}"
        side = "above" if self.rule.above is not None else "below"
        if self.state == "firing":
            return (f"{self.rule.metric} = {self.metric.value:.4g} on {where}, {side} {self.rule.threshold:g} "
                    f"({self.metric.count} pairs, {self.rule.window} window)")  # fmt: skip
        return f"{self.rule.metric} = {self.metric.value:.4g} on {where}: back within {self.rule.threshold:g}"

    def event(self) -> Alert:
        """The `Alert` event on `affresco.monitoring` (its time: the end of the window judged)."""
        m = self.metric
        return Alert(event_time=m.window_end, model=m.model, rule=self.rule.name, severity=self.rule.severity,
                     message=self.message, metric=self.rule.metric, value=m.value, threshold=self.rule.threshold,
                     state=self.state, model_version=m.version, partition=m.partition,
                     window_start=m.window_start, window_end=m.window_end)  # fmt: skip


@dataclass
class AlertBook:
    rules: Sequence[AlertRule]
    windows_ms: dict[str, int]  # rule name -> its window length
    firing: dict[str, list[Any]] = field(default_factory=dict)  # "rule|version|partition" -> [version, partition]

    def judge(self, metrics: Iterable[WindowMetric]) -> list[AlertChange]:
        """The alerts these closed windows fire or resolve, in window order."""
        changes: list[AlertChange] = []
        for metric in metrics:
            for rule in self.rules:
                if (rule.metric, rule.scope, self.windows_ms[rule.name]) != (metric.metric, metric.scope,
                                                                             metric.window_ms):  # fmt: skip
                    continue
                if metric.count < rule.min_count or metric.value != metric.value:  # too few, or NaN (one class)
                    continue
                key = f"{rule.name}|{metric.version}|{metric.partition}"
                if rule.breached(metric.value) and key not in self.firing:
                    self.firing[key] = [metric.version, metric.partition]
                    changes.append(AlertChange("firing", rule, metric))
                elif not rule.breached(metric.value) and key in self.firing:
                    del self.firing[key]
                    changes.append(AlertChange("resolved", rule, metric))
        return changes
