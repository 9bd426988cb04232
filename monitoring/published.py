"""What monitoring published for a model: its `MonitoringMetric` and `Alert` events on `affresco.monitoring`."""

from __future__ import annotations

import json

from streams.admin import TopicAdmin
from streams.events.platform import Alert, MonitoringMetric
from streams.replay import ReplayRange, replay
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["read_published"]


def read_published(model: str, settings: KafkaSettings) -> tuple[list[MonitoringMetric], list[Alert]]:
    """Every metric and alert event of `model` on the monitoring topic, in log order (none if it does not exist)."""
    topic = Topics(settings).monitoring
    metrics: list[MonitoringMetric] = []
    alerts: list[Alert] = []
    if topic not in TopicAdmin(settings).names():
        return metrics, alerts
    for batch in replay(topic, ReplayRange(), settings):
        for m in batch:
            doc = json.loads(m.value() or b"{}")
            if doc.get("model") != model:
                continue
            if doc.get("event_type") == "monitoring_metric":
                metrics.append(MonitoringMetric.model_validate(doc))
            elif doc.get("event_type") == "alert":
                alerts.append(Alert.model_validate(doc))
    return metrics, alerts
