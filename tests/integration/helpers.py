"""Small helpers for integration tests on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Message

from streams.admin import TopicSpec
from streams.replay import ReplayRange, replay
from streams.settings import KafkaSettings


def read_all(topic: str, settings: KafkaSettings) -> list[Message]:
    """Every record currently in `topic` (a bounded replay of the whole log)."""
    return [m for batch in replay(topic, ReplayRange(), settings) for m in batch]


def spec(name: str, partitions: int = 3) -> TopicSpec:
    return TopicSpec(name, partitions=partitions, retention_ms=-1)


@contextmanager
def fresh_keyspace(cassandra_settings: Any) -> Iterator[Any]:
    """`cassandra_settings` on a new keyspace (created by the store on first use), dropped afterwards."""
    from state.cassandra.session import close, connect

    keyspace = f"test_{uuid.uuid4().hex[:12]}"
    yield cassandra_settings.model_copy(update={"keyspace": keyspace})
    session = connect(cassandra_settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        close(session)
