"""Where a backfill reads its events: Kafka (by timestamp) or the Parquet raw archive.

Both yield the same `SourceRow`s the stream processor builds (validated by the same decoder), in
chunks, each with the position to resume after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from confluent_kafka import Message

from processors.definitions import FeatureGroup
from processors.engine import SourceRow
from state.offline import archived_hours, read_raw
from streams.codec import EventDecoder, Rejection
from streams.replay import ReplayRange, plan_replay, replay
from streams.settings import KafkaSettings

__all__ = ["Chunk", "SourceKind", "count_planned", "read_chunks"]

SourceKind = Literal["kafka", "archive"]
_Headers = list[tuple[str, bytes | None]]
HOUR = 3_600_000
# Records per consume call: big enough to amortise the call, small enough to stay in cache.
CONSUME_BATCH = 10_000


@dataclass
class Chunk:
    """Validated rows of one chunk, the partition progress it saw, and how many records it skipped."""

    rows: list[SourceRow] = field(default_factory=list)
    partition_max: dict[int, int] = field(default_factory=dict)
    read: int = 0
    invalid: int = 0
    # Resume position after this chunk: next offset per partition (kafka) or next hour (archive).
    offsets: dict[int, int] = field(default_factory=dict)
    next_hour_ms: int | None = None


def count_planned(
    group: FeatureGroup, kind: SourceKind, start_ms: int, end_ms: int, settings: KafkaSettings
) -> int | None:
    """Records a Kafka backfill will read (for the progress bar); None for the archive."""
    if kind != "kafka":
        return None
    return sum(r.size for r in plan_replay(group.topic, ReplayRange(start_ms=start_ms, end_ms=end_ms), settings))


def read_chunks(
    group: FeatureGroup,
    kind: SourceKind,
    start_ms: int,
    end_ms: int,
    *,
    settings: KafkaSettings,
    offline_root: Path,
    chunk_size: int,
    resume_offsets: dict[int, int] | None = None,
    resume_hour_ms: int | None = None,
) -> Iterator[Chunk]:
    decoder = EventDecoder(group.event_class)
    wanted = group.event_type.encode()
    if kind == "kafka":
        yield from _kafka(group, decoder, wanted, start_ms, end_ms, settings, chunk_size, resume_offsets or {})
    else:
        yield from _archive(group, decoder, start_ms, end_ms, offline_root, chunk_size, resume_hour_ms)


def _kafka(
    group: FeatureGroup,
    decoder: EventDecoder,
    wanted: bytes,
    start_ms: int,
    end_ms: int,
    settings: KafkaSettings,
    chunk_size: int,
    resume: dict[int, int],
) -> Iterator[Chunk]:
    chunk = Chunk(offsets=dict(resume))
    rng = ReplayRange(start_ms=start_ms, end_ms=end_ms)
    # Consume in small batches (a few MB of messages alive at once) and cut chunks at exactly
    # `chunk_size` records, so a chunk does not depend on how the broker happened to batch them.
    for batch in replay(group.topic, rng, settings, batch_size=min(chunk_size, CONSUME_BATCH)):
        if resume:  # records done before the interruption
            batch = [m for m in batch if (m.offset() or 0) >= resume.get(m.partition() or 0, -1)]
        i = 0
        while i < len(batch):
            room = chunk_size - chunk.read
            _fill(chunk, batch[i : i + room], decoder, wanted)
            i += room
            if chunk.read >= chunk_size:
                yield chunk
                chunk = Chunk(offsets=dict(chunk.offsets))
    if chunk.read:
        yield chunk


def _fill(chunk: Chunk, messages: list[Message], decoder: EventDecoder, wanted: bytes) -> None:
    """Add `messages` to `chunk`: every one is read, those of the wanted type decoded."""
    # The hottest loop of a backfill (every record of the topic passes here): the chunk's fields
    # are bound to locals and the header lookup is inlined.
    decode = decoder.decode_one
    rows, offsets, partition_max = chunk.rows, chunk.offsets, chunk.partition_max
    invalid = 0
    for m in messages:
        p, off = m.partition() or 0, m.offset() or 0  # never None on a record (replay drops errors)
        offsets[p] = off + 1
        ts = m.timestamp()[1]
        if ts > partition_max.get(p, -1):
            partition_max[p] = ts
        etype = None
        # = streams.consumer.header(m, "event_type") inlined; a consumed record's headers are a list.
        for name, v in cast(_Headers, m.headers() or ()):
            if name == "event_type":
                etype = v
                break
        if etype is not None and etype != wanted:
            continue
        value = m.value() or b""
        decoded = decode(value)
        if isinstance(decoded, Rejection):
            invalid += 1  # the stream processor dead-lettered it already
            continue
        rows.append(SourceRow(decoded.__dict__, p, off, value, m.key()))
    chunk.read += len(messages)
    chunk.invalid += invalid


def _archive(
    group: FeatureGroup,
    decoder: EventDecoder,
    start_ms: int,
    end_ms: int,
    root: Path,
    chunk_size: int,
    resume_hour_ms: int | None,
) -> Iterator[Chunk]:
    # Whole archived hours per chunk, up to `chunk_size` records (at least one hour): memory stays
    # bounded, hours without events cost nothing, and a resume restarts at an hour boundary.
    first = max(start_ms, resume_hour_ms or start_ms)
    if first >= end_ms:
        return
    batch: list[int] = []
    records = 0
    hours = archived_hours(root, group.topic, first, end_ms)
    for hour, count in hours.items():
        if batch and records + count > chunk_size:
            yield _archived_chunk(group, decoder, root, batch, first, end_ms)
            batch, records = [], 0
        batch.append(hour)
        records += count
    if batch:
        yield _archived_chunk(group, decoder, root, batch, first, end_ms)


def _archived_chunk(
    group: FeatureGroup, decoder: EventDecoder, root: Path, hours: list[int], start_ms: int, end_ms: int
) -> Chunk:
    chunk = Chunk(next_hour_ms=min(end_ms, (hours[-1] + 1) * HOUR))
    # Every record counts (read, partition progress for the watermark): small columns, in Arrow.
    every = read_raw(root, group.topic, start_ms=start_ms, end_ms=end_ms, hours=hours,
                     columns=["kafka_partition", "event_time"])  # fmt: skip
    chunk.read = every.num_rows
    progress = every.group_by("kafka_partition").aggregate([("event_time", "max")])
    chunk.partition_max = dict(
        zip(progress["kafka_partition"].to_pylist(), progress["event_time_max"].to_pylist(), strict=True)
    )
    # Only the group's events are decoded, as from Kafka (where the header routes them).
    wanted = read_raw(root, group.topic, start_ms=start_ms, end_ms=end_ms, hours=hours, event_type=group.event_type,
                      columns=["kafka_partition", "kafka_offset", "key", "value"]).to_pydict()  # fmt: skip
    for p, off, key, value in zip(
        wanted["kafka_partition"], wanted["kafka_offset"], wanted["key"], wanted["value"], strict=True
    ):
        _decode(decoder, value or b"", p, off, key, chunk)
    return chunk


def _decode(decoder: EventDecoder, value: bytes, partition: int, offset: int, key: bytes | None, chunk: Chunk) -> None:
    decoded = decoder.decode_one(value)
    if isinstance(decoded, Rejection):
        chunk.invalid += 1  # the stream processor dead-lettered it already
        return
    chunk.rows.append(SourceRow(decoded.__dict__, partition, offset, value, key))
