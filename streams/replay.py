"""Replay a topic between two timestamps (`offsets_for_times`) or two offsets, without a consumer group.

Ranges are half-open: `[start, end)`. A timestamp range maps, per partition, to the offsets of the
first records with a timestamp ≥ start and ≥ end; with record timestamps = event times (what
`EventProducer` writes) and non-decreasing timestamps per partition, that is exactly the events with
start ≤ event_time < end. Nothing is committed: a replay never moves a consumer group.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streams.admin import watermarks
from streams.exceptions import ReplayError
from streams.settings import KafkaSettings

__all__ = ["PartitionRange", "ReplayRange", "plan_replay", "read_ranges", "replay"]


@dataclass(frozen=True)
class ReplayRange:
    """Either timestamps (UTC ms) or offsets; `None` means the start / the current end of the log."""

    start_ms: int | None = None
    end_ms: int | None = None
    start_offset: int | None = None
    end_offset: int | None = None
    partitions: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        uses_time = self.start_ms is not None or self.end_ms is not None
        uses_offsets = self.start_offset is not None or self.end_offset is not None
        if uses_time and uses_offsets:
            msg = "a replay range is either timestamps or offsets, not both"
            raise ReplayError(msg)
        for lo, hi, what in ((self.start_ms, self.end_ms, "time"), (self.start_offset, self.end_offset, "offset")):
            if lo is not None and hi is not None and hi < lo:
                msg = f"replay end {what} {hi} is before its start {lo}"
                raise ReplayError(msg)
            if lo is not None and lo < 0:
                msg = f"replay start {what} must be ≥ 0, got {lo}"
                raise ReplayError(msg)


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def _consumer(settings: KafkaSettings) -> Consumer:
    return Consumer(
        {
            **settings.client_config(),
            "group.id": f"affresco-replay-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )


def _offsets_for(consumer: Consumer, topic: str, parts: list[int], ts: int, highs: dict[int, int]) -> dict[int, int]:
    found = consumer.offsets_for_times([TopicPartition(topic, p, ts) for p in parts], timeout=10)
    # -1 (OFFSET_END): no record at or after ts, so the boundary is the current end.
    return {tp.partition: (highs[tp.partition] if tp.offset < 0 else tp.offset) for tp in found}


def plan_replay(topic: str, rng: ReplayRange, settings: KafkaSettings | None = None) -> list[PartitionRange]:
    """Resolve a range into per-partition offset ranges."""
    settings = settings or KafkaSettings()
    consumer = _consumer(settings)
    try:
        meta = consumer.list_topics(topic, timeout=10)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            msg = f"cannot replay {topic!r}: topic not found at {settings.bootstrap_servers}"
            raise ReplayError(msg)
        parts = sorted(tmeta.partitions)
        if rng.partitions is not None:
            unknown = set(rng.partitions) - set(parts)
            if unknown:
                msg = f"topic {topic!r} has partitions {parts}, not {sorted(unknown)}"
                raise ReplayError(msg)
            parts = sorted(rng.partitions)
        lows, highs = {}, {}
        for p in parts:
            lows[p], highs[p] = watermarks(consumer, TopicPartition(topic, p), 10.0)
        if rng.start_ms is not None:
            starts = _offsets_for(consumer, topic, parts, rng.start_ms, highs)
        else:
            starts = {p: max(lows[p], rng.start_offset or 0) for p in parts}
        if rng.end_ms is not None:
            ends = _offsets_for(consumer, topic, parts, rng.end_ms, highs)
        else:
            ends = {p: highs[p] if rng.end_offset is None else min(highs[p], rng.end_offset) for p in parts}
        return [PartitionRange(p, starts[p], max(starts[p], ends[p])) for p in parts]
    finally:
        consumer.close()


def replay(
    topic: str,
    rng: ReplayRange,
    settings: KafkaSettings | None = None,
    *,
    batch_size: int = 10_000,
    idle_timeout_s: float = 30.0,
) -> Iterator[list[Message]]:
    """Yield batches of the records of `topic` inside `rng`, in offset order per partition.

    Stops when every partition has reached its end offset. Raises `ReplayError` if the broker
    sends nothing for `idle_timeout_s` while records are still expected.
    """
    settings = settings or KafkaSettings()
    yield from read_ranges(
        topic, plan_replay(topic, rng, settings), settings, batch_size=batch_size, idle_timeout_s=idle_timeout_s
    )


def read_ranges(
    topic: str,
    ranges: list[PartitionRange],
    settings: KafkaSettings | None = None,
    *,
    batch_size: int = 10_000,
    idle_timeout_s: float = 30.0,
) -> Iterator[list[Message]]:
    """Yield batches of the records of `topic` in per-partition offset `ranges`, in offset order per partition.

    What `replay` reads once it has planned its range; callers with their own plan (e.g. chunks cut
    at a common event time across partitions) read it here.
    """
    settings = settings or KafkaSettings()
    plan = [r for r in ranges if r.size > 0]
    if not plan:
        return
    ends = {r.partition: r.end for r in plan}
    consumer = _consumer(settings)
    try:
        consumer.incremental_assign([TopicPartition(topic, r.partition, r.start) for r in plan])
        idle = 0.0
        # consume(N, t) waits until it has N records or t passes: never ask for more than is left.
        remaining = sum(r.size for r in plan)
        while ends:
            msgs = consumer.consume(max(1, min(batch_size, remaining)), 1.0)
            if not msgs:
                idle += 1.0
                if idle >= idle_timeout_s:
                    msg = f"replay of {topic!r} stalled: no records for {idle_timeout_s:.0f}s, still expecting {ends}"
                    raise ReplayError(msg)
                continue
            idle = 0.0
            batch: list[Message] = []
            append = batch.append
            for m in msgs:  # per record: keep this loop lean (no helper calls on the common path)
                err = m.error()
                if err is not None:
                    p = cast(int, m.partition())
                    if err.code() == KafkaError._PARTITION_EOF and p in ends:
                        # Reached the log end; the planned end was the high watermark then.
                        del ends[p]
                        consumer.incremental_unassign([TopicPartition(topic, p)])
                    continue
                p, off = m.partition() or 0, m.offset() or 0  # never None on a record
                end = ends.get(p)
                if end is None:
                    continue
                if off < end:
                    append(m)
                if off >= end - 1:
                    del ends[p]
                    consumer.incremental_unassign([TopicPartition(topic, p)])
            remaining -= len(batch)
            if batch:
                yield batch
    finally:
        consumer.close()
