"""A bytewax Kafka source that emits one item per poll: the poll's records, routed and validated.

bytewax's own `KafkaSource` wraps every record in a Python dataclass and sends records through
the dataflow one by one (a quarter of the processor's time in profiles); this source hands the
next step a whole poll instead. Each source partition decodes its own records in offset order
(`PollDecoder`): its snapshot — the next offset and the greatest event time per event type — is
what makes lateness exact across restarts.

The partitions of a topic read in step (`Alignment`): none emits records more than `MAX_SKEW_MS`
of record time ahead of the others, and none before the others have data, as Flink's watermark
alignment does. Otherwise a partition whose consumer starts fetching first races hours ahead in a
catch-up, the history watermark (the slowest partition) lags far behind, and the history it holds
open grows with the lag. The bound is loose on purpose: a tight one cuts the polls of sparse data
(hours per poll) into small batches, and every batch costs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from processors.runtime.decode import PollDecoder
from processors.runtime.items import DecodedPoll
from streams.events.base import Event
from streams.settings import KafkaSettings
from streams.topics import partition_names

__all__ = ["MAX_SKEW_MS", "Alignment", "PollingKafkaSource", "SourceResume"]


@dataclass(frozen=True)
class SourceResume:
    """A source partition's snapshot: where to read next, and its event-time maxima per type."""

    offset: int
    maxima: dict[str, int] = field(default_factory=dict)


#: How far in record time a source partition may read ahead of the others of its topic.
MAX_SKEW_MS = 6 * 3_600_000
#: A partition with nothing to read for this long stops holding the others back.
IDLE_AFTER_S = 1.0


@dataclass
class _Front:
    at: int = -1  # record time of the next record to emit (buffered), else of the last emitted
    idle: bool = False


class Alignment:
    """Where each source partition of this process stands, so that none runs ahead of the others.

    A partition may emit records up to the slowest busy partition's front plus `max_skew_ms`. A
    front is the time of the partition's next buffered record (else of its last one), so the
    partition with the earliest front can always go on: alignment never deadlocks. Idle partitions
    (nothing to read) hold no one back. The partitions of one topic align with each other; with
    `across_topics`, all partitions of all topics do (a join of two topics, e.g. monitoring's).
    """

    def __init__(self, max_skew_ms: int = MAX_SKEW_MS, *, across_topics: bool = False) -> None:
        self.max_skew_ms = max_skew_ms
        self.across_topics = across_topics
        self._fronts: dict[str, dict[tuple[str, int], _Front]] = {}

    def _lane(self, topic: str) -> dict[tuple[str, int], _Front]:
        return self._fronts.setdefault("" if self.across_topics else topic, {})

    def join(self, topic: str, partition: int) -> _Front:
        return self._lane(topic).setdefault((topic, partition), _Front())

    def limit(self, topic: str, partition: int) -> int | None:
        """The greatest record time `partition` may emit now (None: no limit)."""
        me = (topic, partition)
        others = [f.at for p, f in self._lane(topic).items() if p != me and not f.idle]
        return None if not others else min(others) + self.max_skew_ms


class _Partition(StatefulSourcePartition[DecodedPoll, SourceResume]):
    def __init__(
        self,
        config: dict[str, Any],
        decoder: PollDecoder,
        resume: SourceResume | None,
        batch_size: int,
        tail: bool,
        alignment: Alignment,
    ) -> None:
        self._consumer = Consumer(config)
        self._decode = decoder
        self._offset = OFFSET_BEGINNING if resume is None else resume.offset
        self._consumer.assign([TopicPartition(decoder.topic, decoder.partition, self._offset)])
        self._batch_size = batch_size
        self._tail = tail
        self._eof = False
        self._where = f"{decoder.topic}[{decoder.partition}]"
        self._buffer: list[Message] = []  # consumed, not emitted yet (held back by the alignment)
        self._alignment = alignment
        self._front = alignment.join(decoder.topic, decoder.partition)
        self._last_data = time.monotonic()

    def next_batch(self) -> list[DecodedPoll]:
        if self._eof and not self._buffer:
            self._front.idle = True
            raise StopIteration
        if len(self._buffer) < self._batch_size and not self._eof:
            self._buffer += self._consume(self._batch_size - len(self._buffer))
        if not self._buffer:
            if self._eof or time.monotonic() - self._last_data > IDLE_AFTER_S:
                self._front.idle = True
            return []
        self._last_data = time.monotonic()
        self._front.idle = False
        limit = self._alignment.limit(self._decode.topic, self._decode.partition)
        cut = len(self._buffer) if limit is None else _records_until(self._buffer, limit)
        emit, self._buffer = self._buffer[:cut], self._buffer[cut:]
        self._front.at = (self._buffer[0] if self._buffer else emit[-1]).timestamp()[1]
        if not emit:
            return []
        self._offset = (emit[-1].offset() or 0) + 1
        return [self._decode(emit)]

    def _consume(self, n: int) -> list[Message]:
        good: list[Message] = []
        for m in self._consumer.consume(n, 0.001):
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() == KafkaError._PARTITION_EOF:
                self._eof = not self._tail  # emit what is buffered first, stop after that
            else:
                msg = f"error consuming {self._where}: {err.str()}"
                raise RuntimeError(msg)
        return good

    def snapshot(self) -> SourceResume:
        return SourceResume(self._offset, self._decode.maxima)

    def close(self) -> None:
        self._front.idle = True
        self._consumer.close()


def _records_until(messages: list[Message], limit: int) -> int:
    """How many of `messages` (in offset order) come before the first one timed after `limit`."""
    for i, m in enumerate(messages):
        if m.timestamp()[1] > limit:
            return i
    return len(messages)


class PollingKafkaSource(FixedPartitionedSource[DecodedPoll, SourceResume]):
    """Every partition of `topics`, from the beginning (or the recovered offsets)."""

    def __init__(
        self,
        settings: KafkaSettings,
        wanted: Mapping[str, Iterable[type[Event]]],
        *,
        tail: bool,
        batch_size: int,
        archive: bool,
        alignment: Alignment | None = None,
    ) -> None:
        self.settings = settings
        self.wanted = {topic: list(types) for topic, types in wanted.items()}  # topic -> event types read
        self.tail = tail
        self.batch_size = batch_size
        self.archive = archive
        self.alignment = alignment or Alignment()  # shared by this process's partitions

    def list_parts(self) -> list[str]:
        return partition_names(self.settings, sorted(self.wanted))

    def build_part(self, step_id: str, for_part: str, resume_state: SourceResume | int | None) -> _Partition:
        index, topic = for_part.split("-", 1)
        if isinstance(resume_state, int):  # a snapshot of an earlier version: the offset only
            resume_state = SourceResume(resume_state)
        config = {
            **self.settings.client_config(),
            "group.id": f"affresco-processor-{uuid.uuid4().hex[:8]}",  # required; offsets live in recovery
            "enable.auto.commit": False,
            "enable.partition.eof": not self.tail,
            "fetch.wait.max.ms": 20,  # freshness: do not let the broker hold an empty fetch for 500 ms
        }
        decoder = PollDecoder(
            topic, int(index), self.wanted[topic], self.settings, archive=self.archive,
            maxima=None if resume_state is None else resume_state.maxima,
        )  # fmt: skip
        return _Partition(config, decoder, resume_state, self.batch_size, self.tail, self.alignment)
