"""Where a backfill reads its events: Kafka (by timestamp) or the Parquet raw archive.

Both yield the same `SourceRow`s the stream processor builds — routed by the same rule
(`RecordRouter`), validated by the same decoder, stamped with the same `prior_max` (so the same
events are late) — in chunks, each with the position to resume after it.

Chunks are cut at a common event time across partitions: from Kafka, each chunk is every
partition's records between two record timestamps (`offsets_for_times`), so no partition runs
hours ahead of another and the history watermark follows closely; from the archive, each chunk is
whole event-time hours, after which those hours are complete.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from confluent_kafka import Message

from processors.definitions import FeatureGroup
from processors.engine import HOUR_MS, SourceRow
from processors.progress import PriorMax, prior_maxima
from state.offline import archived_hours, read_raw
from streams.codec import EventDecoder, Rejection
from streams.replay import ReplayRange, plan_replay, read_ranges
from streams.routing import Accepted, RecordRouter, Skipped
from streams.settings import KafkaSettings

__all__ = ["DONE", "Chunk", "SourceKind", "count_planned", "read_chunks"]

SourceKind = Literal["kafka", "archive"]
# Records per consume call: big enough to amortise the call, small enough to stay in cache.
CONSUME_BATCH = 10_000
#: The progress of a partition with nothing left to read: it holds no watermark back.
DONE = 2**62


@dataclass
class Chunk:
    """Validated rows of one chunk, what it skipped and rejected, and how to continue after it.

    `progress`: per source partition, the greatest event time of the group's valid events read so
    far (`DONE` once the partition is exhausted). `complete_before`: every event older than this
    has been read (the archive's hours), or None (Kafka: the watermark tells).
    """

    rows: list[SourceRow] = field(default_factory=list)
    read: int = 0
    skipped: int = 0  # records of other types
    invalid: Counter[str] = field(default_factory=Counter)  # records of the group's type rejected, by reason
    progress: dict[int, int] = field(default_factory=dict)
    complete_before: int | None = None
    resume: Any = None  # pass back to `read_chunks` to continue after this chunk


@dataclass(frozen=True)
class _KafkaResume:
    boundaries: tuple[int, ...]  # record-time cuts, chunk i = [boundaries[i], boundaries[i + 1])
    next_chunk: int
    maxima: dict[tuple[int, str], int]


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
    resume: Any = None,
) -> Iterator[Chunk]:
    """The group's source events in `[start_ms, end_ms)`, chunk by chunk; `resume`: a chunk's `resume`."""
    if kind == "kafka":
        yield from _kafka(group, start_ms, end_ms, settings, chunk_size, resume)
    else:
        yield from _archive(group, start_ms, end_ms, settings, offline_root, chunk_size, resume)


def _router(group: FeatureGroup, settings: KafkaSettings) -> RecordRouter:
    return RecordRouter([group.event_class], max_bytes=settings.max_message_bytes, max_future_ms=settings.max_future_ms)


# -- Kafka ---------------------------------------------------------------------------------------


def _boundaries(
    group: FeatureGroup, start_ms: int, end_ms: int, settings: KafkaSettings, chunk_size: int
) -> tuple[int, ...]:
    """Record-time cuts giving chunks of about `chunk_size` records (hour-aligned, at least an hour)."""
    total = count_planned(group, "kafka", start_ms, end_ms, settings) or 0
    chunks = max(1, math.ceil(total / chunk_size))
    step = max(HOUR_MS, math.ceil((end_ms - start_ms) / chunks / HOUR_MS) * HOUR_MS)
    cuts = list(range((start_ms // HOUR_MS + 1) * HOUR_MS, end_ms, step))
    return (start_ms, *cuts, end_ms)


def _kafka(
    group: FeatureGroup, start_ms: int, end_ms: int, settings: KafkaSettings, chunk_size: int, resume: Any
) -> Iterator[Chunk]:
    if resume is None:
        resume = _KafkaResume(_boundaries(group, start_ms, end_ms, settings, chunk_size), 0, {})
    boundaries, prior = resume.boundaries, PriorMax(resume.maxima)
    router, kind = _router(group, settings), group.event_type
    # Where each partition's records end: a partition read to its end holds no watermark back.
    last_offsets = {
        r.partition: r.end for r in plan_replay(group.topic, ReplayRange(start_ms=start_ms, end_ms=end_ms), settings)
    }
    for i in range(resume.next_chunk, len(boundaries) - 1):
        plan = plan_replay(group.topic, ReplayRange(start_ms=boundaries[i], end_ms=boundaries[i + 1]), settings)
        chunk = Chunk()
        for batch in read_ranges(group.topic, plan, settings, batch_size=CONSUME_BATCH):
            _fill(chunk, batch, router, prior, kind)
        chunk.progress = prior.of(kind)
        for r in plan:
            if r.end >= last_offsets.get(r.partition, 0):
                chunk.progress[r.partition] = DONE
        chunk.resume = _KafkaResume(boundaries, i + 1, dict(prior.maxima))
        yield chunk


def _fill(chunk: Chunk, messages: list[Message], router: RecordRouter, prior: PriorMax, kind: str) -> None:
    """Add `messages` (one partition's in offset order, or several interleaved) to `chunk`."""
    # The hottest loop of a backfill: every record of the topic passes here.
    route, stamp, rows = router.route, prior.stamp, chunk.rows
    now = time.time_ns() // 1_000_000
    for m in messages:
        routed = route(m, now)
        if isinstance(routed, Accepted):
            p, fields = m.partition() or 0, routed.event.__dict__
            rows.append(
                SourceRow(fields, p, m.offset() or 0, m.value() or b"", m.key(), stamp(p, kind, fields["event_time"]))
            )
        elif isinstance(routed, Skipped):
            chunk.skipped += 1
        elif routed.expected_type == kind:
            chunk.invalid[routed.reason] += 1  # the stream processor dead-lettered it already
        else:
            chunk.skipped += 1  # no type could be read from it: not this group's
    chunk.read += len(messages)


# -- the archive ---------------------------------------------------------------------------------


def _archive(
    group: FeatureGroup,
    start_ms: int,
    end_ms: int,
    settings: KafkaSettings,
    root: Path,
    chunk_size: int,
    resume: Any,
) -> Iterator[Chunk]:
    # Whole archived hours per chunk, up to `chunk_size` records (at least one hour): memory stays
    # bounded, hours without events cost nothing, and a resume restarts at an hour boundary.
    first = max(start_ms, resume or start_ms)
    if first >= end_ms:
        return
    decoder = EventDecoder(
        group.event_class, max_bytes=settings.max_message_bytes, max_future_ms=settings.max_future_ms
    )
    late_priors = _late_in_archive(group, root, start_ms, end_ms, decoder)
    batch: list[int] = []
    records = 0
    for hour, count in archived_hours(root, group.topic, first, end_ms).items():
        if batch and records + count > chunk_size:
            yield _archived_chunk(group, decoder, root, batch, first, end_ms, late_priors)
            batch, records = [], 0
        batch.append(hour)
        records += count
    if batch:
        yield _archived_chunk(group, decoder, root, batch, first, end_ms, late_priors)


def _late_in_archive(
    group: FeatureGroup, root: Path, start_ms: int, end_ms: int, decoder: EventDecoder
) -> dict[tuple[int, int], int]:
    """(partition, offset) -> prior_max of the group's events in the range that are late.

    The archive is laid out by event hour, so a replay reads it out of offset order; lateness needs
    offset order, so it is decided first, over the small columns of the whole range.
    """
    columns = ["kafka_partition", "kafka_offset", "event_time", "valid"]
    events = read_raw(root, group.topic, start_ms=start_ms, end_ms=end_ms, event_type=group.event_type, columns=columns)
    partitions, offsets, times, valid = (events[c].to_pylist() for c in columns)
    if None in valid:  # archived when no group read the type: decode those records to know
        values = read_raw(
            root, group.topic, start_ms=start_ms, end_ms=end_ms, event_type=group.event_type, columns=["value"]
        )["value"].to_pylist()  # same rows, same order (both sorted by partition and offset)
        for i, ok in enumerate(valid):
            if ok is None:
                decoded = decoder.decode_one(values[i] or b"")
                valid[i] = not isinstance(decoded, Rejection)
                if valid[i]:
                    times[i] = decoded.event_time  # type: ignore[union-attr]
    kept = [i for i, ok in enumerate(valid) if ok]
    p = np.array([partitions[i] for i in kept], dtype=np.int64)
    o = np.array([offsets[i] for i in kept], dtype=np.int64)
    t = np.array([times[i] for i in kept], dtype=np.int64)
    priors = prior_maxima(p, o, t)
    late = np.flatnonzero(t < priors - group.lateness_ms)
    return {(int(p[i]), int(o[i])): int(priors[i]) for i in late.tolist()}


def _archived_chunk(
    group: FeatureGroup,
    decoder: EventDecoder,
    root: Path,
    hours: list[int],
    start_ms: int,
    end_ms: int,
    late_priors: dict[tuple[int, int], int],
) -> Chunk:
    chunk = Chunk(complete_before=min(end_ms, (hours[-1] + 1) * HOUR_MS))
    chunk.resume = chunk.complete_before
    every = read_raw(root, group.topic, start_ms=start_ms, end_ms=end_ms, hours=hours, columns=["kafka_offset"])
    chunk.read = every.num_rows
    # Only the group's events are decoded, as from Kafka (where routing skips the others).
    wanted = read_raw(root, group.topic, start_ms=start_ms, end_ms=end_ms, hours=hours, event_type=group.event_type,
                      columns=["kafka_partition", "kafka_offset", "key", "value"]).to_pydict()  # fmt: skip
    chunk.skipped = chunk.read - len(wanted["value"])
    for p, off, key, value in zip(
        wanted["kafka_partition"], wanted["kafka_offset"], wanted["key"], wanted["value"], strict=True
    ):
        raw = value or b""
        decoded = decoder.decode_one(raw)
        if isinstance(decoded, Rejection):
            chunk.invalid[decoded.reason] += 1  # the stream processor dead-lettered it already
            continue
        chunk.rows.append(SourceRow(decoded.__dict__, p, off, raw, key, late_priors.get((p, off), -1)))
    return chunk
