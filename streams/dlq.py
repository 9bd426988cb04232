"""The dead-letter convention: what fails goes to `<prefix>.dlq.<source-topic>` with the reason.

The DLQ record's Kafka key is the original record's key (not a field of the dead letter), its value
a `DeadLetter` event carrying the original bytes (base64; truncated for oversized inputs), the
error, the source topic/partition/offset, and, when a feature group rejected it, the group and the
step that failed. Dead letters are written at least once (a processor that crashes before its
commit rejects the same records again): (source_topic, source_partition, source_offset, group)
identifies one rejection.
"""

from __future__ import annotations

import base64
import time
from collections import Counter

from streams.admin import TopicAdmin
from streams.events.platform import DeadLetter
from streams.producer import EventProducer, event_headers
from streams.topics import Topics

__all__ = ["DeadLetterWriter", "decode_original"]

# Keep the DLQ record itself well under the broker's message limit (base64 grows bytes by 4/3).
MAX_ORIGINAL_BYTES = 64 * 1024


def decode_original(letter: DeadLetter) -> bytes:
    """The original value bytes of a dead letter (possibly truncated: see `letter.truncated`)."""
    return base64.b64decode(letter.original_value_b64)


class DeadLetterWriter:
    """Send rejected records to their source topic's DLQ, counting them by reason.

    The DLQ topic is created on first use. Sends share the caller's producer, so one `flush()`
    makes both the good records and the dead letters durable.
    """

    def __init__(self, producer: EventProducer, admin: TopicAdmin | None = None) -> None:
        self.producer = producer
        self.topics = Topics(producer.settings)
        self._admin = admin
        self._ensured: set[str] = set()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _ensure(self, source_topic: str) -> str:
        topic = self.topics.dlq(source_topic)
        if topic not in self._ensured:
            admin = self._admin or TopicAdmin(self.producer.settings)
            admin.ensure([self.topics.dlq_spec(source_topic)])
            self._ensured.add(topic)
        return topic

    def send(
        self,
        *,
        source_topic: str,
        value: bytes,
        reason: str,
        error: str,
        key: bytes | None = None,
        partition: int | None = None,
        offset: int | None = None,
        expected_type: str | None = None,
        group: str | None = None,
        step: str | None = None,
    ) -> DeadLetter:
        """Queue one dead letter; returns it.

        `reason` is one of `DEAD_LETTER_REASONS`; `group` the feature group ref that rejected the
        record (e.g. "zone_demand:v1"), `step` where it failed ("route", "decode", "filter/key",
        "aggregate", "produce feature update", ...).
        """
        topic = self._ensure(source_topic)
        truncated = len(value) > MAX_ORIGINAL_BYTES
        letter = DeadLetter(
            event_time=int(time.time() * 1000),
            source_topic=source_topic,
            source_partition=partition,
            source_offset=offset,
            reason=reason,  # type: ignore[arg-type]  # validated by the model
            error=error[:20_000],
            expected_type=expected_type,
            group=group,
            step=step,
            original_key_b64=base64.b64encode(key[:MAX_ORIGINAL_BYTES]).decode() if key is not None else None,
            original_value_b64=base64.b64encode(value[:MAX_ORIGINAL_BYTES]).decode(),
            original_size=len(value),
            truncated=truncated,
        )
        self.producer.send_raw(topic, letter.model_dump_json().encode(), key=key, headers=event_headers(DeadLetter))
        self.counts[reason] += 1
        return letter
