"""Step 1 of the stream processor: whole Kafka polls in, validated rows per (group, shard) out.

One pass over the batch: records of other event types are skipped by their `event_type` header
(a topic such as rides.trips carries several types), invalid ones become dead letters, valid ones
are routed to the state shard of their group. Raw records are also emitted for the archive.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message

from processors.definitions import FeatureGroup
from processors.engine import SourceRow
from processors.runtime.items import ArchiveBatch, ArchiveRow, DeadLetterBatch, DeadLetterItem, ShardBatch
from processors.runtime.source import Poll
from streams.codec import EventDecoder, Rejection

__all__ = ["BatchDecoder", "shard_of"]


def shard_of(group_ref: str, entity_hint: str, shards: int) -> str:
    """The state shard of a record: stable across processes and restarts (not `hash()`)."""
    return f"{group_ref}#{zlib.crc32(entity_hint.encode()) % shards}"


class BatchDecoder:
    """Decode a batch of KafkaSourceMessages for every group reading their topic."""

    def __init__(self, groups: Sequence[FeatureGroup], shards: int, *, archive: bool = True) -> None:
        self.shards = shards
        self.archive = archive
        # Routing tables built once: this runs per record.
        self._by_topic: dict[str, list[FeatureGroup]] = defaultdict(list)
        self._by_topic_type: dict[tuple[str, str], list[FeatureGroup]] = defaultdict(list)
        for g in groups:
            self._by_topic[g.topic].append(g)
            self._by_topic_type[(g.topic, g.event_type)].append(g)
        self._decoders = {g.event_type: EventDecoder(g.event_class) for g in groups}
        self._type_of = {g.ref: g.event_type for g in groups}
        self._shard_field = {g.ref: next(iter(sorted(g.key.fields)), None) for g in groups}
        self._topic_of = {g.ref: g.topic for g in groups}

    def __call__(self, polls: list[Poll]) -> list[Any]:
        archive: list[ArchiveRow] = []
        dead: list[DeadLetterItem] = []
        shards: dict[str, list[SourceRow]] = defaultdict(list)
        progress: dict[str, dict[int, int]] = defaultdict(dict)
        for poll in polls:
            for m in poll.messages:
                self._one(m, archive, dead, shards, progress)
        out: list[Any] = []
        for shard, rows in shards.items():
            ref = shard.split("#", 1)[0]
            out.append(ShardBatch(shard, ref, rows, progress[self._topic_of[ref]]))
        if archive:
            out.append(ArchiveBatch(archive))
        if dead:
            out.append(DeadLetterBatch(dead))
        return out

    def _one(
        self,
        m: Message,
        archive: list[ArchiveRow],
        dead: list[DeadLetterItem],
        shards: dict[str, list[SourceRow]],
        progress: dict[str, dict[int, int]],
    ) -> None:
        topic, partition, offset, key = m.topic() or "", m.partition() or 0, m.offset() or 0, m.key()
        # Record timestamps are event times (EventProducer writes them so): every record of the
        # topic, of any type, advances its partition's watermark.
        ts = m.timestamp()[1]
        seen = progress[topic]
        if ts > seen.get(partition, -1):
            seen[partition] = ts
        value: bytes = m.value() or b""
        etype = _header(m.headers(), "event_type")
        wanted = self._by_topic.get(topic, ()) if etype is None else self._by_topic_type.get((topic, etype), ())
        event_time: int | None = None
        if wanted:
            decoder = self._decoders[self._type_of[wanted[0].ref]]
            decoded = decoder.decode_one(value)
            if isinstance(decoded, Rejection):
                dead.append(
                    DeadLetterItem(
                        topic, partition, offset, key, value, decoded.reason, decoded.error, decoder.expected
                    )
                )
            else:
                fields = decoded.__dict__  # the model's field dict: no copy
                event_time = fields.get("event_time")
                row = SourceRow(fields, partition, offset, value, key)
                for g in wanted:
                    # Any field of the key expression shards deterministically: same entity, same shard.
                    field = self._shard_field[g.ref]
                    hint = "" if field is None else str(fields.get(field, ""))
                    shards[shard_of(g.ref, hint, self.shards)].append(row)
        if self.archive:
            # Undecoded records (other event types) are archived too, at their record timestamp.
            archive.append(ArchiveRow(topic, partition, offset, key, value, event_time or ts, etype))


def _header(headers: Any, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v.decode() if isinstance(v, bytes) else v
    return None
