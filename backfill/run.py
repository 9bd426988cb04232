"""Backfill: replay a group's source events through the same `GroupEngine` the stream processor runs.

Historical values go to the offline store (the group's Parquet dataset, rows `written_by`
"backfill"), each row written once final — the same `finalize` as the stream — so every row is
the definition's value as of its time; `load_online` upserts the final value of every entity into
the online store, where versioning never lets it overwrite a newer one. Progress is checkpointed
after every chunk, so an interrupted backfill resumes.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backfill.resources import gc_paused, peak_rss_mb
from backfill.source import Chunk, SourceKind, count_planned, read_chunks
from processors.definitions import FeatureGroup
from processors.engine import HOUR_MS, EntityState, EntityUpdate, GroupEngine, GroupState, HistoryRow, SourceRow
from processors.records import history_row, online_record
from state.offline import ParquetMirror
from state.offline.temporaries import remove_stale_temporaries
from state.online import OnlineStore
from streams.admin import TopicAdmin
from streams.exceptions import TopicError
from streams.settings import KafkaSettings

__all__ = ["BackfillJob", "BackfillReport", "run_backfill"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillJob:
    group: FeatureGroup
    source: SourceKind
    start_ms: int
    end_ms: int
    offline_root: Path
    checkpoint_dir: Path
    chunk_size: int = 200_000
    load_online: bool = False


@dataclass
class BackfillReport:
    read: int = 0
    accepted: int = 0
    invalid: int = 0
    late: int = 0
    filtered: int = 0
    skipped: int = 0
    updates: int = 0
    history_rows: int = 0
    chunks: int = 0
    loaded_online: int = 0
    resumed: bool = False
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)  # by reason: invalid records and the group's rejections
    examples: list[dict[str, Any]] = field(default_factory=list)  # the first few rejections by the group


@dataclass
class _Checkpoint:
    state: GroupState
    resume: Any
    report: BackfillReport


_EXAMPLES = 5


#: The layout of a checkpoint (2: the group state with its open history, the reader's resume position).
_CHECKPOINT_FORMAT = 2


def _checkpoint_path(job: BackfillJob) -> Path:
    name = f"{job.group.ref.replace(':', '-')}.{job.source}.{job.start_ms}-{job.end_ms}.v{_CHECKPOINT_FORMAT}.pkl"
    return job.checkpoint_dir / name


def _save(path: Path, cp: _Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(cp, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, path)  # atomic: a crash leaves the previous checkpoint intact


def _partitions(job: BackfillJob, settings: KafkaSettings) -> int:
    try:
        return len(TopicAdmin(settings).partitions(job.group.topic))
    except TopicError:
        return 1  # the topic is gone (archive-only history): the archive's hours say what is final


def run_backfill(
    job: BackfillJob,
    settings: KafkaSettings,
    open_store: Callable[[], OnlineStore] | None = None,
    *,
    on_progress: Callable[[int, int | None], None] | None = None,
    max_chunks: int | None = None,
) -> BackfillReport:
    """Run (or resume) a backfill; `max_chunks` stops early (as an interruption would)."""
    with gc_paused():
        return _run(job, settings, open_store, on_progress, max_chunks)


def _run(
    job: BackfillJob,
    settings: KafkaSettings,
    open_store: Callable[[], OnlineStore] | None,
    on_progress: Callable[[int, int | None], None] | None,
    max_chunks: int | None,
) -> BackfillReport:
    started = time.monotonic()
    path = _checkpoint_path(job)
    engine = GroupEngine(job.group)
    if path.exists():
        cp: _Checkpoint = pickle.loads(path.read_bytes())  # our own checkpoint
        cp.report.resumed = True
        log.info("resuming %s from %s", job.group.ref, path)
    else:
        cp = _Checkpoint(GroupState(_partitions(job, settings)), None, BackfillReport())
    remove_stale_temporaries(job.offline_root)
    report = cp.report
    total = count_planned(job.group, job.source, job.start_ms, job.end_ms, settings)
    mirror = ParquetMirror(job.offline_root, job.group.name, job.group.version)
    chunks = read_chunks(
        job.group, job.source, job.start_ms, job.end_ms, settings=settings, offline_root=job.offline_root,
        chunk_size=job.chunk_size, resume=cp.resume,
    )  # fmt: skip
    # Each entity's last update of this run: what `load_online` writes, unless the entity was last
    # touched before a resume (not checkpointed: recomputed then).
    last_updates: dict[str, EntityUpdate] = {}
    for n, chunk in enumerate(chunks, start=1):
        history = _apply_chunk(engine, cp.state, chunk, report, last_updates if job.load_online else None)
        if history:
            mirror.write([history_row(r, "backfill") for r in history])
            report.history_rows += len(history)
        cp.resume = chunk.resume
        report.chunks += 1
        _save(path, cp)
        if on_progress is not None:
            on_progress(report.read, total)
        if max_chunks is not None and n >= max_chunks:
            report.seconds += time.monotonic() - started
            return report
    rest = engine.finalize_all(cp.state)  # the end of the range: nothing more will be read
    if rest:
        mirror.write([history_row(r, "backfill") for r in rest])
        report.history_rows += len(rest)
    report.late = report.rejected.get("late_event", 0)
    if job.load_online and open_store is not None:
        records = [
            online_record(job.group, _final(engine, entity, state, last_updates.get(entity)))
            for entity, state in cp.state.entities.items()
        ]
        with open_store() as store:
            for i in range(0, len(records), 5000):
                store.upsert(records[i : i + 5000], ttl_ms=job.group.ttl_ms)
        report.loaded_online = len(records)
    report.seconds += time.monotonic() - started
    report.peak_rss_mb = peak_rss_mb()
    path.unlink(missing_ok=True)  # done: a new run starts over
    return report


def _apply_chunk(
    engine: GroupEngine,
    state: GroupState,
    chunk: Chunk,
    report: BackfillReport,
    last_updates: dict[str, EntityUpdate] | None,
) -> list[HistoryRow]:
    """Fold a chunk hour by hour in event-time order, writing history as it becomes final.

    Order within a chunk changes no value (every partial is order-free and lateness was decided by
    the reader), and folding the hours in order lets each one be written as soon as the rest of the
    chunk cannot touch it, so a chunk of many hours never holds them all open.
    """
    report.read += chunk.read
    report.skipped += chunk.skipped
    report.invalid += sum(chunk.invalid.values())
    for reason, count in chunk.invalid.items():
        report.rejected[reason] = report.rejected.get(reason, 0) + count
    state.advance(chunk.progress)
    horizon = chunk.complete_before if chunk.complete_before is not None else state.horizon(engine.group.lateness_ms)
    history: list[HistoryRow] = []
    for hour_end, rows in _by_hour(chunk.rows, engine.group.spec.event_time):
        result = engine.apply(state, rows)
        report.accepted += result.accepted
        report.filtered += result.filtered
        report.updates += len(result.updates)
        for r in result.rejected:
            report.rejected[r.reason] = report.rejected.get(r.reason, 0) + 1
            if r.reason != "late_event" and len(report.examples) < _EXAMPLES:
                report.examples.append({"partition": r.row.partition, "offset": r.row.offset, "reason": r.reason,
                                        "step": r.step, "error": r.error})  # fmt: skip
        if last_updates is not None:
            last_updates.update((u.entity, u) for u in result.updates)
        if horizon is not None:
            history += engine.finalize(state, min(hour_end, horizon))
    return history


def _by_hour(rows: Sequence[SourceRow], time_field: str) -> list[tuple[int, list[SourceRow]]]:
    """Rows grouped by event-time hour, oldest first, with each hour's end."""
    by_hour: dict[int, list[SourceRow]] = {}
    for row in rows:
        by_hour.setdefault(row.fields[time_field] // HOUR_MS, []).append(row)
    return [((hour + 1) * HOUR_MS, by_hour[hour]) for hour in sorted(by_hour)]


def _final(engine: GroupEngine, entity: str, state: EntityState, last: EntityUpdate | None = None) -> EntityUpdate:
    """The entity's values as of its latest event, as the stream processor last wrote them.

    `last` is the entity's last update, if known. Every change of a state makes an update with the
    values as of its `u`, so when `last` has the state's version (u, rev) it holds exactly these
    values and bytes; recomputing them was most of `load_online`'s time for many entities.
    """
    if last is not None and last.event_time == state.u and last.revision == state.rev:
        return last
    return EntityUpdate(entity, state.u, state.rev, engine.values(state, state.u), -1, -1, state.to_bytes())
