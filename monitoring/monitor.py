"""One model's monitoring state: the join, the metric windows and the alert rules, fed events.

The one implementation that every way of running monitoring calls: `affresco monitor replay`
(the logs, bounded) and `affresco monitor run` (the stream processor, crash-safe). Feed it
`Prediction` events and outcome events in any order within the spec's lateness; each call
returns what became final — the `MonitoringMetric` events of the windows the watermark closed and
the `Alert` events they fired or resolved — and `counts()` says where every input went.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from typing import Any

from monitoring.alerts import AlertBook
from monitoring.join import Outcome, Pair, PairJoin, Prediction
from monitoring.spec import MonitorDefinition
from monitoring.traffic import TrafficWindows
from monitoring.windows import JoinedPair, WindowedMetrics
from processors.dsl.exceptions import DslEvaluationError
from streams.events.base import Event
from streams.events.platform import Alert, MonitoringMetric
from streams.events.platform import Prediction as PredictionEvent

__all__ = ["Monitor"]

Output = MonitoringMetric | Alert
ManifestOf = Callable[[int], Mapping[str, Any] | None]


class Monitor:
    def __init__(self, definition: MonitorDefinition, manifest_of: ManifestOf | None = None) -> None:
        """`manifest_of(version)`: the bundle manifest of a version (its training distributions), for drift."""
        self.definition = definition
        self.join = PairJoin(definition.horizon_ms, definition.lateness_ms)
        self.windows = WindowedMetrics(definition.task, definition.windows_ms)
        self.traffic = TrafficWindows(definition.windows_ms, manifest_of or (lambda _: None))
        rules = definition.spec.alerts
        self.alerts = AlertBook(rules, {r.name: definition.window_of(r) for r in rules})
        self.skipped: dict[str, int] = {}  # inputs not monitored, by reason

    def prediction(self, event: PredictionEvent | Mapping[str, Any]) -> list[Output]:
        """Take one prediction of the monitored model: the event, or its validated fields (the stream
        processor's decoded rows are the event's own field dict, so nothing is built again per event)."""
        fields = _fields(event)
        if fields["model"] != self.definition.model:
            return self._skip("other_model")
        join_key, request_id = fields["join_key"], fields["request_id"]
        if join_key is None:
            return self._skip("prediction_without_join_key")
        if request_id not in self.join.seen_ids:  # a duplicate is counted by the join, not described twice
            self.traffic.add(fields)
        payload = [fields["model_version"], fields["partition"], fields["prediction"]]
        return self._paired(self.join.add_prediction(Prediction(request_id, join_key, fields["event_time"], payload)))

    def outcome(self, event: Event | Mapping[str, Any]) -> list[Output]:
        """Take one outcome event (of the spec's type), or its fields: its join key, its time, its label
        (the spec's DSL expression)."""
        spec = self.definition.spec.outcomes
        fields = _fields(event)
        key = fields.get(spec.join_key)
        try:
            label = self.definition.label.evaluate(fields)
        except DslEvaluationError:
            return self._skip("label_not_computable")
        if key is None or label is None:
            return self._skip("outcome_without_key_or_label")
        return self._paired(self.join.add_outcome(Outcome(str(key), int(fields["event_time"]), float(label))))

    def close(self) -> list[Output]:
        """The inputs ended: what waits expires, every open window closes."""
        self.join.close()
        return self._emit([*self.windows.close(), *self.traffic.close()])

    def snapshot(self) -> bytes:
        """The state (join, open windows, firing alerts, counts) as bytes, for the stream processor's
        recovery: `restore` of it continues exactly where this monitor stands."""
        state = {"join": self.join, "windows": self.windows.windows, "traffic": self.traffic.windows,
                 "firing": self.alerts.firing, "skipped": self.skipped}  # fmt: skip
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, snapshot: bytes) -> None:
        state = pickle.loads(snapshot)  # our own snapshot, from the recovery store
        self.join, self.windows.windows, self.traffic.windows = state["join"], state["windows"], state["traffic"]
        self.alerts.firing, self.skipped = state["firing"], state["skipped"]

    def counts(self) -> dict[str, Any]:
        return {**self.join.counts(), "skipped": dict(self.skipped), "late_pairs": self.windows.late_pairs,
                "late_predictions_for_traffic": self.traffic.late}  # fmt: skip

    def _paired(self, pairs: list[Pair]) -> list[Output]:
        for pair in pairs:
            version, partition, prediction = pair.prediction.payload
            self.windows.add(JoinedPair(self.definition.model, version, partition, pair.outcome.time_ms,
                                        prediction, pair.outcome.value))  # fmt: skip
        watermark = self.join.watermark
        if watermark is None or not (_due(self.windows.windows.next_end, watermark)
                                     or _due(self.traffic.windows.next_end, watermark)):  # fmt: skip
            return []
        return self._emit([*self.windows.close(watermark), *self.traffic.close(watermark)])

    def _emit(self, metrics: list[Any]) -> list[Output]:
        out: list[Output] = [m.event() for m in metrics]
        out += [change.event() for change in self.alerts.judge(metrics)]
        return out

    def _skip(self, reason: str) -> list[Output]:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        return []


def _fields(event: Event | Mapping[str, Any]) -> Mapping[str, Any]:
    """An event's fields: its own field dict (the stream processor's decoded rows are these already)."""
    if isinstance(event, dict):  # the common case first: a C check, not the ABCs' (~1 µs each)
        return event
    return event if isinstance(event, Mapping) else event.__dict__


def _due(next_end: int | None, watermark: int) -> bool:
    return next_end is not None and next_end <= watermark
