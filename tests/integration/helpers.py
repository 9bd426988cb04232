"""Small helpers for integration tests on the real broker."""

from __future__ import annotations

from confluent_kafka import Message

from streams.admin import TopicSpec
from streams.replay import ReplayRange, replay
from streams.settings import KafkaSettings


def read_all(topic: str, settings: KafkaSettings) -> list[Message]:
    """Every record currently in `topic` (a bounded replay of the whole log)."""
    return [m for batch in replay(topic, ReplayRange(), settings) for m in batch]


def spec(name: str, partitions: int = 3) -> TopicSpec:
    return TopicSpec(name, partitions=partitions, retention_ms=-1)
