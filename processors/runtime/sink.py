"""Step 3 of the stream processor: write what the state step produced.

- online store: event-time-versioned upserts (a replay after a crash never regresses a value);
- `affresco.features.<group>`: one `FeatureUpdate` per entity update (at-least-once after a crash;
  consumers dedupe on (group, entity_key, event_time, revision));
- Parquet mirror and raw archive: buffered, written at every epoch snapshot (deduplicated on read);
- dead letters: to `affresco.dlq.<source-topic>`.

Kafka records are flushed at every snapshot, before bytewax commits the epoch's offsets, so no
output of a committed epoch can be lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from processors.definitions import FeatureGroup
from processors.records import feature_update_event, mirror_row, online_record
from processors.runtime.items import ArchiveBatch, ArchiveRow, DeadLetterBatch, GroupOutput
from state.online import OnlineRecord, OnlineStore
from streams.dlq import DeadLetterWriter
from streams.events.platform import FeatureUpdate
from streams.producer import EventProducer, event_headers
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["OutputConfig", "ProcessorSink", "SinkCounters"]

log = logging.getLogger(__name__)

_FLUSH_ROWS = 200_000


@dataclass(frozen=True)
class OutputConfig:
    kafka: KafkaSettings
    open_store: Callable[[], OnlineStore]
    mirror_root: Path | None
    emit_feature_updates: bool = True


@dataclass
class SinkCounters:
    updates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    archived: int = 0


class _Partition(StatefulSinkPartition[Any, None]):
    def __init__(self, groups: dict[str, FeatureGroup], config: OutputConfig, counters: SinkCounters) -> None:
        self.groups = groups
        self.config = config
        self.counters = counters
        self.store = config.open_store()
        self.producer = EventProducer(config.kafka)
        self.dlq = DeadLetterWriter(self.producer)
        self.topics = Topics(config.kafka)
        self._mirror_rows: dict[str, list[dict[str, Any]]] = {}
        self._archive_rows: list[ArchiveRow] = []

    def write_batch(self, values: list[Any]) -> None:
        records: list[OnlineRecord] = []
        for item in values:
            if isinstance(item, GroupOutput):
                records += self._group_output(item)
            elif isinstance(item, ArchiveBatch):
                self._archive_rows += item.rows
            elif isinstance(item, DeadLetterBatch):
                for d in item.items:
                    self._dead_letter(d.topic, d.partition, d.offset, d.key, d.value, d.reason, d.error)
        if records:
            by_group: dict[str, list[OnlineRecord]] = {}
            for r in records:
                by_group.setdefault(r.group, []).append(r)
            for ref, recs in by_group.items():
                self.store.upsert(recs, ttl_ms=self.groups[ref].ttl_ms)
        self.producer.poll(0)
        if sum(len(v) for v in self._mirror_rows.values()) + len(self._archive_rows) > _FLUSH_ROWS:
            self._flush_files()

    def _group_output(self, out: GroupOutput) -> list[OnlineRecord]:
        group = self.groups[out.group]
        records = []
        feature_topic = self.topics.features(group.name)
        mirror = self._mirror_rows.setdefault(out.group, [])
        for u in out.updates:
            records.append(online_record(group, u))
            if self.config.emit_feature_updates:
                event = feature_update_event(group, u)
                self.producer.send_raw(
                    feature_topic,
                    event.model_dump_json().encode(),
                    key=u.entity,
                    headers=[*event_headers(FeatureUpdate), ("revision", str(u.revision).encode())],
                    timestamp_ms=u.event_time,
                )
            mirror.append(mirror_row(u))
        self.counters.updates += len(out.updates)
        for rej in out.rejected:
            row = rej.row
            self._dead_letter(out.source_topic, row.partition, row.offset, row.key, row.raw, rej.reason, rej.error)
        return records

    def _dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes, reason: str, error: str
    ) -> None:
        self.dlq.send(
            source_topic=topic, value=value, reason=reason, error=error, key=key, partition=partition, offset=offset
        )
        self.counters.dead_letters[reason] += 1

    def _flush_files(self) -> None:
        root = self.config.mirror_root
        if root is None:
            self._mirror_rows.clear()
            self._archive_rows.clear()
            return
        import pyarrow as pa  # only when mirroring

        from state.offline import RAW_SCHEMA, ParquetMirror, RawArchive

        for ref, mirror_rows in self._mirror_rows.items():
            if mirror_rows:
                group = self.groups[ref]
                ParquetMirror(root, group.name, group.version).write(mirror_rows)
        self._mirror_rows = {}
        if self._archive_rows:
            archive = self._archive_rows
            # Columns, not dicts: the archive sees every source record, so this path is hot.
            table = pa.table(
                {
                    "topic": [r.topic for r in archive],
                    "kafka_partition": pa.array([r.partition for r in archive], pa.int32()),
                    "kafka_offset": pa.array([r.offset for r in archive], pa.int64()),
                    "key": pa.array([r.key for r in archive], pa.binary()),
                    "value": pa.array([r.value for r in archive], pa.binary()),
                    "event_time": pa.array([r.event_time for r in archive], pa.int64()),
                    "event_type": pa.array([r.event_type for r in archive], pa.string()),
                },
                schema=RAW_SCHEMA,
            )
            RawArchive(root).write(table)
            self.counters.archived += len(self._archive_rows)
            self._archive_rows = []

    def snapshot(self) -> None:
        started = time.perf_counter()
        self.producer.flush(60)
        self._flush_files()
        log.debug("sink snapshot in %.1f ms", (time.perf_counter() - started) * 1000)

    def close(self) -> None:
        self.snapshot()
        self.store.close()


class ProcessorSink(FixedPartitionedSink[Any, None]):
    """One sink partition per process (it owns the embedded store)."""

    def __init__(self, groups: dict[str, FeatureGroup], config: OutputConfig, counters: SinkCounters) -> None:
        self.groups = groups
        self.config = config
        self.counters = counters

    def list_parts(self) -> list[str]:
        return ["0"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(self.groups, self.config, self.counters)
