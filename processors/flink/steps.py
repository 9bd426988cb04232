"""What the Flink job's Python functions do, without Flink: decode a source partition, apply an entity's
records, write the outputs. Each step calls the bytewax processor's code, so both engines judge,
aggregate and write every record identically.

- `DecodeStep` runs per source partition (the job keys the records by (topic, partition), which
  keeps each partition's offset order): `PollDecoder` routes, validates and stamps each valid
  event's `prior_max`; the partition's event-time maxima are the caller's (Flink keyed) state.
- `EntityStep` runs per (group, entity): `GroupEngine.apply` on the entity's `GroupState`, the
  caller's (Flink keyed) state. The job keys by the same field the bytewax processor shards by.
- `Outputs` buffers what both produce and hands it to `OutputWriter` in batches: per entity only
  its latest update of a batch (as a bytewax micro-batch does), rejected records to the DLQ.
  `Outputs.pending` / `Outputs.settle` tie those writes to Flink's checkpoints: each key keeps its
  outputs in its keyed state until a timer finds them written (see `Pending`).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from processors.definitions import FeatureGroup, compile_spec
from processors.engine import EntityUpdate, GroupEngine, GroupState, Rejected, SourceRow
from processors.runtime.decode import PollDecoder
from processors.runtime.items import DeadLetterBatch, DeadLetterItem, GroupOutput, TopicCounts
from processors.runtime.outputs import OutputConfig, OutputWriter, SinkCounters
from state.online import OnlineStore, open_store
from streams.events.base import Event
from streams.settings import KafkaSettings

__all__ = ["DecodeStep", "EntityStep", "JobConfig", "Outputs", "Pending", "RawRecord", "entity_hint_fields"]

#: A key's outputs not yet seen written, by token: ("update", ref, entity), ("rejected", ref, partition,
#: offset) or ("dead", topic, partition, offset) -> the item that writes it (again). A Flink checkpoint
#: holds a key's state, not the writer's buffer: an output buffered when a checkpoint was taken and lost
#: with its TaskManager before the write is never produced again by the replay, which starts after its
#: record. So every key keeps its unwritten outputs in its keyed state, and a processing-time timer
#: (checkpointed too) drops them once this worker has written them, or writes them again when the
#: worker is a new one, restored from the checkpoint. At-least-once, and idempotent downstream: the
#: online upserts are versioned by (event_time, revision), as in the bytewax processor.
Pending = dict[tuple[Any, ...], Any]


@dataclass(frozen=True)
class JobConfig:
    """Everything the job needs, as JSON: written by the launcher (main venv), read by the job (flink venv)."""

    groups: list[dict[str, Any]]  # the groups' specs (compiled again in the job: one definition)
    kafka: dict[str, Any]  # KafkaSettings
    store: dict[str, Any]  # open_store("cassandra", **store)
    partitions: dict[str, int]  # source topic -> partition count
    run_dir: str  # the summaries of the job's subtasks are written here
    jar: str  # flink-sql-connector-kafka
    python: str  # the flink venv's python (the Python workers)
    parallelism: int = 2
    target: str = "local"  # local: in-process mini-cluster, no restarts; cluster: `flink run`, restarts
    restart_attempts: int = 30  # cluster target: restarts, 3 s apart, before the job fails
    until_idle: bool = True
    checkpoint_interval_ms: int = 5000
    emit_feature_updates: bool = True
    flush_records: int = 2000  # outputs are written after this many input records ...
    flush_ms: int = 500  # ... or this long after the first unwritten one, and at the end
    job_name: str = "affresco"

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> JobConfig:
        return cls(**json.loads(path.read_text()))

    def feature_groups(self) -> list[FeatureGroup]:
        out = []
        for doc in self.groups:
            group, problems = compile_spec(doc, "flink job config")
            if group is None:
                msg = f"group {doc.get('group')!r} does not compile in the Flink job: {problems}"
                raise ValueError(msg)
            out.append(group)
        return out

    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(**self.kafka)

    def open_store(self) -> OnlineStore:
        return open_store("cassandra", **self.store)


def entity_hint_fields(groups: Sequence[FeatureGroup]) -> dict[str, str | None]:
    """Per group ref, the field whose value keys its records (the bytewax processor shards by it too):
    any field of the key expression gives one entity one key."""
    return {g.ref: next(iter(sorted(g.key.fields)), None) for g in groups}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A Kafka record as the Flink source gives it, shaped as `streams.types.KafkaMessage`."""

    topic_: str
    partition_: int
    offset_: int
    key_: bytes | None
    value_: bytes | None
    headers_: list[tuple[str, str | bytes | None]]
    timestamp_ms: int

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)  # TIMESTAMP_CREATE_TIME


@dataclass
class Routed:
    """One decoded record: its valid event for every group reading it (as (state key, group ref, row))."""

    rows: list[tuple[str, str, SourceRow]] = field(default_factory=list)
    dead: DeadLetterBatch | None = None
    counts: TopicCounts | None = None
    maxima: dict[str, int] = field(default_factory=dict)


class DecodeStep:
    """Route, validate and stamp the records of the source partitions (`PollDecoder`, one per partition)."""

    def __init__(self, groups: Sequence[FeatureGroup], settings: KafkaSettings) -> None:
        self.settings = settings
        self.wanted: dict[str, list[type[Event]]] = {}
        self.readers: dict[tuple[str, str], list[str]] = {}  # (topic, event type) -> group refs
        for g in groups:
            if g.event_class not in self.wanted.setdefault(g.topic, []):
                self.wanted[g.topic].append(g.event_class)
            self.readers.setdefault((g.topic, g.event_type), []).append(g.ref)
        self.hint = entity_hint_fields(groups)
        self._decoders: dict[tuple[str, int], PollDecoder] = {}

    def has(self, topic: str, partition: int) -> bool:
        """Whether this step holds the partition's decoder (else build it from the state's maxima)."""
        return (topic, partition) in self._decoders

    def decode(self, record: RawRecord, maxima: dict[str, int] | None) -> Routed:
        """`maxima`: the partition's event-time maxima by type from the state, when `has` is False."""
        key = (record.topic_, record.partition_)
        decoder = self._decoders.get(key)
        if decoder is None:
            decoder = self._decoders[key] = PollDecoder(
                record.topic_, record.partition_, self.wanted.get(record.topic_, ()), self.settings,
                archive=False, maxima=maxima,
            )  # fmt: skip
        poll = decoder([record])
        out = Routed(maxima=poll.progress)
        for kind, rows in poll.rows.items():
            for ref in self.readers.get((record.topic_, kind), ()):
                name = self.hint[ref]
                for row in rows:
                    hint = "" if name is None else str(row.fields.get(name, ""))
                    out.rows.append((f"{ref}|{hint}", ref, row))
        if poll.dead:
            out.dead = DeadLetterBatch(poll.dead)
        out.counts = TopicCounts(poll.topic, poll.read, poll.skipped, Counter(d.reason for d in poll.dead))
        return out


class EntityStep:
    """`GroupEngine.apply` on the state of one key (the entities of one group sharing a key field value)."""

    def __init__(self, groups: Sequence[FeatureGroup], partitions: dict[str, int]) -> None:
        self.engines = {g.ref: GroupEngine(g) for g in groups}
        self.partitions = partitions

    def apply(self, ref: str, state: GroupState | None, row: SourceRow) -> tuple[GroupState, GroupOutput]:
        engine = self.engines[ref]
        group = engine.group
        if state is None:
            state = GroupState(self.partitions[group.topic])
        result = engine.apply(state, [row])
        # The offline history is not written by this job (yet): drop what only it needs, so the
        # keyed state holds the online part. The online values never read it.
        state.open_hours.clear()
        for entity in state.entities.values():
            entity.history = None
            entity.retained.clear()
        output = GroupOutput(
            ref, group.topic, updates=result.updates, rejected=result.rejected,
            accepted=result.accepted, filtered=result.filtered, late=result.late,
        )  # fmt: skip
        return state, output


class Outputs:
    """Buffers outputs and writes them with `OutputWriter` in batches; each entity's latest update only.

    `flush_records` / `flush_ms` bound the buffer; `close` writes the rest and the subtask's summary
    (the launcher adds the summaries up).
    """

    def __init__(
        self, config: JobConfig, groups: Sequence[FeatureGroup], name: str, *, with_store: bool = True
    ) -> None:
        self.config = config
        self.name = name
        store_factory = config.open_store if with_store else cast(Callable[[], OnlineStore], _NoStore)
        output = OutputConfig(
            config.kafka_settings(), store_factory, None, emit_feature_updates=config.emit_feature_updates
        )
        self.writer = OutputWriter({g.ref: g for g in groups}, output, SinkCounters())
        self._latest: dict[tuple[str, str], EntityUpdate] = {}
        self._groups: dict[str, GroupOutput] = {}  # per group: counts and rejected since the last write
        self._other: list[Any] = []
        self._pending = 0
        self._since = 0.0
        self._finished = False
        self._active = False
        # What this worker has written (and still buffers), for `settle`: the latest version per
        # entity, and the tokens of dead letters.
        self._written_updates: dict[tuple[str, str], tuple[int, int]] = {}
        self._written: set[tuple[Any, ...]] = set()
        self._buffered: set[tuple[Any, ...]] = set()

    def add(self, item: GroupOutput | DeadLetterBatch | TopicCounts | None) -> None:
        if item is None:
            return
        if isinstance(item, GroupOutput):
            self._add_group(item)
        else:
            if isinstance(item, DeadLetterBatch):
                self._buffered.update(_dead_token(d) for d in item.items)
            self._other.append(item)
        if not self._pending:
            self._since = time.monotonic()
        self._pending += 1
        if (
            self._pending >= self.config.flush_records
            or (time.monotonic() - self._since) * 1000 >= self.config.flush_ms
        ):
            self.flush()

    def _add_group(self, out: GroupOutput) -> None:
        for u in out.updates:
            key = (out.group, u.entity)
            held = self._latest.get(key)
            if held is None or (u.event_time, u.revision) >= (held.event_time, held.revision):
                self._latest[key] = u
        self._buffered.update(_rejected_token(out.group, r) for r in out.rejected)
        acc = self._groups.get(out.group)
        rejected: list[Rejected] = [*(acc.rejected if acc else []), *out.rejected]
        self._groups[out.group] = GroupOutput(
            out.group, out.source_topic, rejected=rejected,
            accepted=(acc.accepted if acc else 0) + out.accepted,
            filtered=(acc.filtered if acc else 0) + out.filtered,
            late=(acc.late if acc else 0) + out.late,
        )  # fmt: skip

    def flush(self) -> None:
        if not self._pending:
            return
        updates: dict[str, list[EntityUpdate]] = {}
        for (ref, _), u in self._latest.items():
            updates.setdefault(ref, []).append(u)
        batch: list[Any] = list(self._other)
        for ref, acc in self._groups.items():
            batch.append(
                GroupOutput(
                    ref,
                    acc.source_topic,
                    updates=updates.pop(ref, []),
                    rejected=acc.rejected,
                    accepted=acc.accepted,
                    filtered=acc.filtered,
                    late=acc.late,
                )
            )
        self.writer.write_batch(batch)
        self.writer.snapshot()  # Kafka flushed, refused records handled
        for key, u in self._latest.items():
            self._written_updates[key] = max(
                self._written_updates.get(key, (u.event_time, u.revision)), (u.event_time, u.revision)
            )
        self._written |= self._buffered
        self._latest, self._groups, self._other, self._pending, self._buffered = {}, {}, [], 0, set()

    def flush_due(self) -> None:
        """Write the buffer if its first item waited `flush_ms` (the job's timers call it: no record may come)."""
        if self._pending and (time.monotonic() - self._since) * 1000 >= self.config.flush_ms:
            self.flush()

    @staticmethod
    def pending(item: GroupOutput | DeadLetterBatch | None) -> Pending:
        """The outputs of `item` a key keeps in its state until they are written (see `Pending`)."""
        if item is None:
            return {}
        if isinstance(item, DeadLetterBatch):
            return {_dead_token(d): DeadLetterBatch([d]) for d in item.items}
        out: Pending = {
            ("update", item.group, u.entity): GroupOutput(item.group, item.source_topic, updates=[u])
            for u in item.updates
        }
        for r in item.rejected:
            out[_rejected_token(item.group, r)] = GroupOutput(item.group, item.source_topic, rejected=[r])
        return out

    def settle(self, pending: Pending) -> Pending:
        """What of a key's `pending` is still unwritten. Written ones are dropped; buffered ones kept;
        the others — lost with a previous worker, this one restored from a checkpoint — are buffered again."""
        remaining: Pending = {}
        for token, item in pending.items():
            if token[0] == "update":
                (u,) = item.updates
                version = (u.event_time, u.revision)
                key = (token[1], token[2])
                written = self._written_updates.get(key)
                if written is not None and written >= version:
                    if written == version:
                        del self._written_updates[key]
                    continue
                held = self._latest.get(key)
                if held is None or (held.event_time, held.revision) < version:
                    self.add(item)
            else:
                if token in self._written:
                    self._written.discard(token)
                    continue
                if token not in self._buffered:
                    self.add(item)
            remaining[token] = item
        return remaining

    def mark_active(self, subtask: int) -> None:
        """Once per worker, at its first record: this subtask must report its end (the launcher checks)."""
        if not self._active:
            self._active = True
            run_dir = Path(self.config.run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / f"active-{self.name}-{subtask}").touch()

    def finish(self, subtask: int) -> None:
        """The end of the input (the job's end-of-input timer): write the rest and the subtask's summary.
        Once; `close` does the same, but PyFlink does not always call it before the worker exits."""
        if self._finished:
            return
        self._finished = True
        self.flush()
        self.writer.snapshot()
        self._write_summary(subtask)

    def close(self, subtask: int) -> None:
        self.flush()
        self.writer.close()
        self._write_summary(subtask)

    def _write_summary(self, subtask: int) -> None:
        run_dir = Path(self.config.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / f"summary-{self.name}-{subtask}.json"
        tmp = run_dir / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(self.writer.counters.summary()))
        os.replace(tmp, path)


def _dead_token(item: DeadLetterItem) -> tuple[Any, ...]:
    return ("dead", item.topic, item.partition, item.offset, item.group)


def _rejected_token(ref: str, rejected: Rejected) -> tuple[Any, ...]:
    return ("rejected", ref, rejected.row.partition, rejected.row.offset)


class _NoStore:
    """The decode step writes dead letters only: it opens no online store."""

    def upsert(self, *args: Any, **kwargs: Any) -> None:
        msg = "the decode step writes no online records"
        raise AssertionError(msg)

    def close(self) -> None:
        pass
