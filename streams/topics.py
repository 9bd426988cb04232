"""Names and default specs of affresco's own topics (the prefix is `KafkaSettings.topic_prefix`)."""

from __future__ import annotations

from streams.admin import TopicAdmin, TopicSpec
from streams.settings import KafkaSettings

__all__ = ["Topics", "partition_names"]

_DAY_MS = 24 * 3600 * 1000


class Topics:
    """Topic names for one deployment.

    >>> Topics(KafkaSettings()).dlq("rides.trips")
    'affresco.dlq.rides.trips'
    """

    def __init__(self, settings: KafkaSettings | None = None) -> None:
        self.prefix = (settings or KafkaSettings()).topic_prefix

    def features(self, group: str) -> str:
        return f"{self.prefix}.features.{group}"

    @property
    def models(self) -> str:
        return f"{self.prefix}.models"

    def predictions(self, model: str) -> str:
        return f"{self.prefix}.predictions.{model}"

    @property
    def monitoring(self) -> str:
        return f"{self.prefix}.monitoring"

    def dlq(self, source_topic: str) -> str:
        return f"{self.prefix}.dlq.{source_topic}"

    # Specs: the registry is compacted (latest state per key); logs that replays and audits read
    # are kept long. The DLQ keeps 30 days: enough to notice, fix and re-drive.
    def models_spec(self) -> TopicSpec:
        return TopicSpec(self.models, partitions=1, compacted=True)

    def dlq_spec(self, source_topic: str) -> TopicSpec:
        return TopicSpec(self.dlq(source_topic), partitions=1, retention_ms=30 * _DAY_MS)

    def features_spec(self, group: str, partitions: int = 4) -> TopicSpec:
        return TopicSpec(self.features(group), partitions=partitions, retention_ms=-1)

    def predictions_spec(self, model: str, partitions: int = 4) -> TopicSpec:
        return TopicSpec(self.predictions(model), partitions=partitions, retention_ms=-1)

    def monitoring_spec(self) -> TopicSpec:
        return TopicSpec(self.monitoring, partitions=1, retention_ms=-1)


def partition_names(settings: KafkaSettings, topics: list[str]) -> list[str]:
    """`"<partition>-<topic>"` for every partition of `topics` (how stream sources name their parts)."""
    admin = TopicAdmin(settings)
    return [f"{p}-{t}" for t in topics for p in admin.partitions(t)]
