"""What monitoring published for a model: its `MonitoringMetric` and `Alert` events on `affresco.monitoring`.

A stream monitor restarted after a crash publishes again the windows it closed after its last
snapshot (with the same content): `identity` names what one event states — a window's metric, or
an alert's change — and readers keep the last event of each identity.
"""

from __future__ import annotations

import json

from streams.admin import TopicAdmin
from streams.events.platform import Alert, MonitoringMetric
from streams.replay import ReplayRange, replay
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["identity", "read_published"]


def identity(event: MonitoringMetric | Alert) -> tuple[object, ...]:
    """What the event states: the same identity twice is the same statement (a republished window)."""
    if isinstance(event, MonitoringMetric):
        return ("metric", event.model, event.model_version, event.partition, event.window_start, event.window_end,
                event.metric)  # fmt: skip
    return ("alert", event.model, event.rule, event.model_version, event.partition, event.window_end, event.state)


def read_published(model: str, settings: KafkaSettings) -> tuple[list[MonitoringMetric], list[Alert]]:
    """Every metric and alert event of `model` on the monitoring topic, in log order, the last of each
    identity only (none if the topic does not exist)."""
    topic = Topics(settings).monitoring
    found: dict[tuple[object, ...], MonitoringMetric | Alert] = {}
    if topic not in TopicAdmin(settings).names():
        return [], []
    for batch in replay(topic, ReplayRange(), settings):
        for m in batch:
            doc = json.loads(m.value() or b"{}")
            if doc.get("model") != model:
                continue
            event: MonitoringMetric | Alert
            if doc.get("event_type") == "monitoring_metric":
                event = MonitoringMetric.model_validate(doc)
            elif doc.get("event_type") == "alert":
                event = Alert.model_validate(doc)
            else:
                continue
            key = identity(event)
            found.pop(key, None)  # the last statement of an identity, at its place in the log
            found[key] = event
    metrics = [e for e in found.values() if isinstance(e, MonitoringMetric)]
    return metrics, [e for e in found.values() if isinstance(e, Alert)]
