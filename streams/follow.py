"""Follow a topic from the beginning, the end, or a point in time (what `affresco tail` reads)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, Message, TopicPartition

from streams.exceptions import TopicError
from streams.settings import KafkaSettings

__all__ = ["follow"]


def follow(
    topic: str,
    settings: KafkaSettings | None = None,
    *,
    from_beginning: bool = False,
    since_ms: int | None = None,
    idle_timeout_s: float | None = None,
    poll_s: float = 0.5,
) -> Iterator[Message]:
    """Yield records of every partition of `topic` as they arrive, without a consumer group.

    Starts at `since_ms` (first record with a timestamp ≥ it), else the beginning or the end.
    Stops after `idle_timeout_s` without a record; runs until the caller stops iterating otherwise.
    """
    settings = settings or KafkaSettings()
    consumer = Consumer(
        {
            **settings.client_config(),
            "group.id": f"affresco-tail-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            msg = f"topic {topic!r} not found at {settings.bootstrap_servers} (see `affresco topics list`)"
            raise TopicError(msg)
        parts = sorted(tmeta.partitions)
        if since_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in parts], timeout=10)
            start = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]
        else:
            origin = OFFSET_BEGINNING if from_beginning else OFFSET_END
            start = [TopicPartition(topic, p, origin) for p in parts]
        consumer.assign(start)
        idle = 0.0
        while True:
            msgs = consumer.consume(1000, poll_s)
            good = [m for m in msgs if m.error() is None]
            if not good:
                idle += poll_s
                if idle_timeout_s is not None and idle >= idle_timeout_s:
                    return
                continue
            idle = 0.0
            yield from good
    finally:
        consumer.close()
