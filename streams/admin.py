"""Topic administration: idempotent creation with partitions, retention and compaction; describe."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from streams.exceptions import TopicError
from streams.settings import KafkaSettings

__all__ = ["PartitionInfo", "TopicAdmin", "TopicDescription", "TopicSpec", "watermarks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """What a topic should look like. `retention_ms=-1` keeps records forever."""

    name: str
    partitions: int = 4
    retention_ms: int | None = None
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def topic_config(self) -> dict[str, str]:
        conf = dict(self.config)
        if self.retention_ms is not None:
            conf["retention.ms"] = str(self.retention_ms)
        if self.compacted:
            conf["cleanup.policy"] = "compact"
        return conf


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    low: int
    high: int

    @property
    def messages(self) -> int:
        return self.high - self.low


@dataclass(frozen=True)
class TopicDescription:
    name: str
    partitions: list[PartitionInfo]
    config: dict[str, str]

    @property
    def messages(self) -> int:
        return sum(p.messages for p in self.partitions)


class TopicAdmin:
    """A thin, typed wrapper over `AdminClient`.

    >>> admin = TopicAdmin(KafkaSettings())            # doctest: +SKIP
    >>> admin.ensure([TopicSpec("rides.trips", partitions=4, retention_ms=-1)])  # doctest: +SKIP
    ['rides.trips']
    """

    def __init__(self, settings: KafkaSettings | None = None, *, timeout_s: float = 10.0) -> None:
        self.settings = settings or KafkaSettings()
        self.timeout_s = timeout_s
        self._admin = AdminClient(self.settings.client_config())

    def ping(self, timeout_s: float | None = None) -> int:
        """Raise `TopicError` unless a broker answers; returns the number of brokers."""
        try:
            meta = self._admin.list_topics(timeout=timeout_s or self.timeout_s)
        except KafkaException as exc:
            msg = f"Kafka at {self.settings.bootstrap_servers} did not answer: {exc.args[0]}"
            raise TopicError(msg) from exc
        return len(meta.brokers)

    def names(self, *, include_internal: bool = False) -> list[str]:
        self.ping()
        meta = self._admin.list_topics(timeout=self.timeout_s)
        return sorted(t for t in meta.topics if include_internal or not t.startswith("__"))

    def ensure(self, specs: list[TopicSpec]) -> list[str]:
        """Create the topics that do not exist yet; return the names created. Existing ones are kept."""
        if not specs:
            return []
        self.ping()
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.topic_config()) for s in specs
        ]
        futures = self._admin.create_topics(new, request_timeout=self.timeout_s)
        created: list[str] = []
        for name, fut in futures.items():
            try:
                fut.result()
                created.append(name)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    msg = f"could not create topic {name!r}: {err.str()}"
                    raise TopicError(msg) from exc
        if created:
            log.info("created topics %s", created)
            self._wait_for_metadata(created)
        return created

    def _wait_for_metadata(self, names: list[str]) -> None:
        # A just-created topic can be missing from metadata for a moment; producers would then fail.
        for _ in range(50):
            meta = self._admin.list_topics(timeout=self.timeout_s)
            if all(n in meta.topics and not meta.topics[n].error and _leaders_ready(meta.topics[n]) for n in names):
                return

            time.sleep(0.1)

    def delete(self, names: list[str]) -> None:
        futures = self._admin.delete_topics(names, request_timeout=self.timeout_s)
        for name, fut in futures.items():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    msg = f"could not delete topic {name!r}: {exc.args[0].str()}"
                    raise TopicError(msg) from exc

    def partitions(self, name: str) -> list[int]:
        """The partition ids of a topic (metadata only: no offsets, no configs)."""
        meta = self._admin.list_topics(topic=name, timeout=self.timeout_s)
        topic = meta.topics.get(name)
        if topic is None or topic.error is not None:
            msg = f"topic {name!r} not found at {self.settings.bootstrap_servers}"
            raise TopicError(msg)
        return sorted(topic.partitions)

    def describe(self, name: str) -> TopicDescription:
        """Partitions with leaders and low/high watermarks, and the topic's non-default config."""
        from confluent_kafka import Consumer

        meta = self._admin.list_topics(topic=name, timeout=self.timeout_s)
        topic = meta.topics.get(name)
        if topic is None or topic.error is not None:
            msg = f"topic {name!r} not found at {self.settings.bootstrap_servers}"
            raise TopicError(msg)
        consumer = Consumer({**self.settings.client_config(), "group.id": "affresco-describe"})
        try:
            partitions = []
            for pid, pmeta in sorted(topic.partitions.items()):
                low, high = watermarks(consumer, TopicPartition(name, pid), self.timeout_s)
                partitions.append(PartitionInfo(pid, pmeta.leader, low, high))
        finally:
            consumer.close()
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        entries = self._admin.describe_configs([resource])[resource].result(timeout=self.timeout_s)
        config = {k: v.value for k, v in entries.items() if not v.is_default and v.value is not None}
        return TopicDescription(name, partitions, config)


_RETRIABLE = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART}


def _leaders_ready(topic: Any) -> bool:
    return all(p.leader >= 0 and p.error is None for p in topic.partitions.values())


def watermarks(consumer: Any, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """Low and high offsets; a just-created partition may briefly have no leader: retry that."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in _RETRIABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
