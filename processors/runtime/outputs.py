"""Writing what the stream processor's state step produced, for every engine (bytewax, Flink).

- online store: event-time-versioned upserts (a replay after a crash never regresses a value);
- `affresco.features.<group>`: one `FeatureUpdate` per entity update. At-least-once after a crash;
  (group, version, entity_key, source_offsets) identifies an update's content, so consumers dedupe
  on it exactly;
- the offline history `<offline>/<group>/v<version>/`: rows written once final (see
  `GroupEngine.finalize`), buffered and written at every epoch snapshot; (entity_key, event_time)
  identifies a row's content (repeats after a crash are equal, readers drop them);
- the raw archive: every source record, buffered like the history;
- dead letters to `affresco.dlq.<source-topic>`, keyed (source_topic, partition, offset, group).

A record the broker refuses (e.g. a timestamp too far ahead) is sent again on its own, since the
broker refuses a whole batch for one bad record; if it is refused again it is dead-lettered with
the broker's reason (`output_rejected`), and the processor goes on. Kafka records are flushed at
every snapshot, before bytewax commits the epoch's offsets, so no output of a committed epoch can
be lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from processors.definitions import FeatureGroup
from processors.engine import EntityUpdate
from processors.records import feature_update_event, history_row, online_record
from processors.runtime.items import ArchiveBatch, ArchiveRow, DeadLetterBatch, DeadLetterItem, GroupOutput, TopicCounts
from state.exceptions import StateError
from state.online import OnlineRecord, OnlineStore
from streams.dlq import DeadLetterWriter
from streams.events.platform import FeatureUpdate
from streams.producer import EventProducer, FailedRecord, event_headers
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["GroupCounts", "OutputConfig", "OutputWriter", "SinkCounters", "merge_summaries"]

log = logging.getLogger(__name__)

_FLUSH_ROWS = 200_000


@dataclass(frozen=True)
class OutputConfig:
    kafka: KafkaSettings
    open_store: Callable[[], OnlineStore]
    mirror_root: Path | None
    emit_feature_updates: bool = True


@dataclass
class GroupCounts:
    """What happened to the records of one group's event type."""

    accepted: int = 0
    filtered: int = 0
    late: int = 0
    updates: int = 0
    history_rows: int = 0
    history_forced: int = 0  # written before the watermark passed them (a silent source partition)
    history_at_end: int = 0  # written at the end of a bounded run (--until-idle)
    dead_lettered: Counter[str] = field(default_factory=Counter)


@dataclass
class SinkCounters:
    """The processor's accounting, per topic (before any group) and per group."""

    updates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    archived: int = 0
    read: Counter[str] = field(default_factory=Counter)  # by topic
    skipped: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # topic -> type -> n
    topic_dead_letters: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    groups: dict[str, GroupCounts] = field(default_factory=lambda: defaultdict(GroupCounts))
    group_topics: dict[str, str] = field(default_factory=dict)  # group ref -> its source topic
    output_rejected: int = 0

    def summary(self) -> dict[str, Any]:
        """The closing summary: per topic read / skipped / dead-lettered, per group the rest."""
        return {
            "topics": {
                topic: {
                    "read": read,
                    "skipped": dict(self.skipped.get(topic, {})),
                    "dead_lettered": dict(self.topic_dead_letters.get(topic, {})),
                }
                for topic, read in sorted(self.read.items())
            },
            "groups": {
                ref: {
                    "accepted": c.accepted,
                    "filtered": c.filtered,
                    "late": c.late,
                    "updates": c.updates,
                    "dead_lettered": dict(c.dead_lettered),
                    "history_rows": c.history_rows,
                    "history_forced": c.history_forced,
                    "history_at_end": c.history_at_end,
                }
                for ref, c in sorted(self.groups.items())
            },
            "updates": self.updates,
            "dead_letters": dict(self.dead_letters),
            "output_rejected": self.output_rejected,
            "archived": self.archived,
        }


class OutputWriter:
    """Writes what the state step produced (no engine-specific code: bytewax's sink and the Flink job use it)."""

    def __init__(self, groups: dict[str, FeatureGroup], config: OutputConfig, counters: SinkCounters) -> None:
        self.groups = groups
        self.config = config
        self.counters = counters
        self.store = config.open_store()
        self.producer = EventProducer(config.kafka, collect_failures=True)
        self.dlq = DeadLetterWriter(self.producer)
        self.topics = Topics(config.kafka)
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._archive_rows: list[ArchiveRow] = []

    def write_batch(self, values: list[Any]) -> None:
        records: dict[str, list[OnlineRecord]] = {}
        for item in values:
            if isinstance(item, GroupOutput):
                self._group_output(item, records.setdefault(item.group, []))
            elif isinstance(item, ArchiveBatch):
                self._archive_rows += item.rows
            elif isinstance(item, DeadLetterBatch):
                for d in item.items:
                    self._dead_letter(d)
            elif isinstance(item, TopicCounts):
                self.counters.read[item.topic] += item.read
                self.counters.skipped[item.topic].update(item.skipped)
                self.counters.topic_dead_letters[item.topic].update(item.dead)
        for ref, recs in records.items():
            if recs:
                self.store.upsert(recs, ttl_ms=self.groups[ref].ttl_ms)
        self.producer.poll(0)
        self._handle_refused()
        if sum(len(v) for v in self._history.values()) + len(self._archive_rows) > _FLUSH_ROWS:
            self._flush_files()

    def _group_output(self, out: GroupOutput, records: list[OnlineRecord]) -> None:
        group = self.groups[out.group]
        counts = self.counters.groups[out.group]
        self.counters.group_topics[out.group] = group.topic
        counts.accepted += out.accepted
        counts.filtered += out.filtered
        counts.late += out.late
        counts.updates += len(out.updates)
        feature_topic = self.topics.features(group.name)
        for u in out.updates:
            try:
                records.append(online_record(group, u))
                event = feature_update_event(group, u) if self.config.emit_feature_updates else None
            except (ValidationError, StateError) as exc:  # a value no output can hold: never a crash
                self._unwritable(out, u, exc)
                continue
            if event is not None:
                self.producer.send_raw(
                    feature_topic,
                    event.model_dump_json().encode(),
                    key=u.entity,
                    headers=[*event_headers(FeatureUpdate), ("revision", str(u.revision).encode())],
                    timestamp_ms=u.event_time,
                )
        self.counters.updates += len(out.updates)
        if out.history:
            counts.history_rows += len(out.history)
            counts.history_forced += sum(1 for r in out.history if r.forced)
            counts.history_at_end += sum(1 for r in out.history if r.at_end)
            self._history.setdefault(out.group, []).extend(history_row(r, "stream") for r in out.history)
        for rej in out.rejected:
            row = rej.row
            counts.dead_lettered[rej.reason] += 1
            item = DeadLetterItem(
                out.source_topic, row.partition, row.offset, row.key, row.raw, rej.reason, rej.error,
                group.event_type, out.group, rej.step,
            )  # fmt: skip
            self._dead_letter(item)

    def _unwritable(self, out: GroupOutput, update: EntityUpdate, exc: Exception) -> None:
        error = f"{out.group}: the update of {update.entity!r} as of {update.event_time} cannot be written: {exc}"
        value = orjson.dumps(update.values, default=repr)
        item = DeadLetterItem(
            out.source_topic, update.partition, update.offset, update.entity.encode(), value, "processing_error",
            error[:20_000], "feature_update", out.group, "produce feature update",
        )  # fmt: skip
        self.counters.groups[out.group].dead_lettered["processing_error"] += 1
        self._dead_letter(item)

    def _dead_letter(self, d: DeadLetterItem) -> None:
        self.dlq.send(
            source_topic=d.topic, value=d.value, reason=d.reason, error=d.error, key=d.key,
            partition=d.partition, offset=d.offset, expected_type=d.expected_type, group=d.group, step=d.step,
        )  # fmt: skip
        self.counters.dead_letters[d.reason] += 1

    def _handle_refused(self, *, flush: bool = False) -> None:
        """Records the broker refused: each is sent alone once more, then dead-lettered with the reason."""
        failed = self.producer.take_failures()
        if not failed:
            return
        for record in self.producer.resend_alone(failed):
            self._output_rejected(record)
        if flush:
            self.producer.flush(60)

    def _output_rejected(self, record: FailedRecord) -> None:
        source_topic, partition, offset, group = record.topic, None, None, None
        if record.topic.startswith(f"{self.topics.prefix}.dlq."):
            # A dead letter itself was refused: nothing is left to tell; never loop on it.
            log.error("a dead letter to %s was refused: %s", record.topic, record.error)
            self.counters.output_rejected += 1
            return
        try:  # a feature update: dead-letter it against the source record it came from
            update = json.loads(record.value)
            source_topic = update.get("source_topic") or record.topic
            partition, offset = update.get("source_partition"), update.get("source_offset")
            group = f"{update['group']}:v{update['version']}"
        except (ValueError, KeyError, TypeError):
            pass
        self.dlq.send(
            source_topic=source_topic, value=record.value, reason="output_rejected",
            error=f"{record.topic} refused the record: {record.error}", key=record.key,
            partition=partition, offset=offset, expected_type="feature_update", group=group,
            step="produce feature update",
        )  # fmt: skip
        self.counters.output_rejected += 1
        self.counters.dead_letters["output_rejected"] += 1

    def _flush_files(self) -> None:
        root = self.config.mirror_root
        if root is None:
            self._history.clear()
            self._archive_rows.clear()
            return
        import pyarrow as pa  # only when mirroring

        from state.offline import RAW_SCHEMA, ParquetMirror, RawArchive

        for ref, rows in self._history.items():
            if rows:
                group = self.groups[ref]
                ParquetMirror(root, group.name, group.version).write(rows)
        self._history = {}
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
                    "valid": pa.array([r.valid for r in archive], pa.bool_()),
                },
                schema=RAW_SCHEMA,
            )
            RawArchive(root).write(table)
            self.counters.archived += len(self._archive_rows)
            self._archive_rows = []

    def snapshot(self) -> None:
        started = time.perf_counter()
        self.producer.poll(0)
        self.producer.flush(60)
        self._handle_refused(flush=True)
        self._flush_files()
        log.debug("sink snapshot in %.1f ms", (time.perf_counter() - started) * 1000)

    def close(self) -> None:
        self.snapshot()
        self.store.close()


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of several writers' `SinkCounters.summary()` (the subtasks of a Flink job): counts add up."""

    def add(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: add(a[k], b[k]) if k in a and k in b else (a[k] if k in a else b[k]) for k in {**a, **b}}
        return a + b

    merged: dict[str, Any] = {}
    for s in summaries:
        merged = add(merged, s)
    return {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in merged.items()}
