"""Step 2 of the stream processor: decoded polls in, one batch per (group, state shard) out.

A topic such as rides.trips carries several event types; each valid event goes to every group
reading its type, in the shard of its entity. Every shard of such a group also hears the source
partition's progress whenever it enters a new hour, so a quiet shard's history watermark moves too.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from processors.definitions import FeatureGroup
from processors.engine import HOUR_MS, SourceRow
from processors.runtime.items import ArchiveBatch, DeadLetterBatch, DecodedPoll, ShardBatch, TopicCounts

__all__ = ["ShardRouter", "shard_of"]


def shard_of(group_ref: str, entity_hint: str, shards: int) -> str:
    """The state shard of a record: stable across processes and restarts (not `hash()`)."""
    return f"{group_ref}#{zlib.crc32(entity_hint.encode()) % shards}"


class ShardRouter:
    """Split decoded polls by (group, shard); pass the archive, dead letters and counts on."""

    def __init__(self, groups: Sequence[FeatureGroup], shards: int) -> None:
        self.shards = shards
        self._by_topic_type: dict[tuple[str, str], list[FeatureGroup]] = defaultdict(list)
        for g in groups:
            self._by_topic_type[(g.topic, g.event_type)].append(g)
        # Any field of the key expression shards deterministically: same entity, same shard.
        self._shard_field = {g.ref: next(iter(sorted(g.key.fields)), None) for g in groups}
        self._names = {g.ref: [f"{g.ref}#{n}" for n in range(shards)] for g in groups}
        self._told: dict[tuple[str, int], int] = {}  # (group, partition) -> hour of the progress every shard heard

    def __call__(self, polls: list[DecodedPoll]) -> list[Any]:
        out: list[Any] = []
        archive, dead = [], []
        for poll in polls:
            for kind, rows in poll.rows.items():
                progress = poll.progress[kind]
                for group in self._by_topic_type.get((poll.topic, kind), ()):
                    out += self._shard_batches(group, rows, poll.partition, progress)
            archive += poll.archive
            dead += poll.dead
            out.append(TopicCounts(poll.topic, poll.read, poll.skipped, Counter(d.reason for d in poll.dead)))
        if archive:
            out.append(ArchiveBatch(archive))
        if dead:
            out.append(DeadLetterBatch(dead))
        return out

    def _shard_batches(
        self, group: FeatureGroup, rows: list[SourceRow], partition: int, progress: int
    ) -> list[ShardBatch]:
        """A batch for each shard with rows; every shard hears the progress when it enters a new
        hour (the history is hourly: a shard's watermark may lag by less than that, which only
        delays its rows)."""
        ref, field = group.ref, self._shard_field[group.ref]
        by_shard: dict[str, list[SourceRow]] = {}
        for row in rows:
            hint = "" if field is None else str(row.fields.get(field, ""))
            by_shard.setdefault(shard_of(ref, hint, self.shards), []).append(row)
        hour = progress // HOUR_MS
        if self._told.get((ref, partition)) != hour:
            self._told[(ref, partition)] = hour
            for name in self._names[ref]:
                by_shard.setdefault(name, [])
        return [ShardBatch(shard, ref, shard_rows, {partition: progress}) for shard, shard_rows in by_shard.items()]
