"""Point-in-time-correct training sets: each label row gets each feature's value as of its time.

"As of t" is the definition in processors/README.md: built only from events with event_time ≤ t,
windows slid to t, values older than the group's TTL missing (null) — what an online read at
instant t returns. Events are accepted exactly as by the stream (`GroupEngine.evaluate`: filter,
key, lateness, expressions); the values come from the batch as-of kernel
(`processors.kernels.asof`), which answers every label at once from the events sorted by
(entity, time), so no event after a label's time can reach its row.
"""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from backfill.resources import gc_paused
from processors.definitions import FeatureGroup
from processors.engine import GroupEngine, SourceRow
from processors.exceptions import ProcessorsError
from processors.kernels.asof import AsOf, Timeline
from processors.prediction import features_instant

if TYPE_CHECKING:
    from streams.settings import KafkaSettings

__all__ = ["BuiltTrainingSet", "FeatureRequest", "build_training_set", "event_time_column", "label_times",
           "labels_from_topic", "point_in_time_join", "read_group_events"]  # fmt: skip


@dataclass(frozen=True)
class FeatureRequest:
    """Features of one group, and the label column that holds the group's entity key."""

    group: FeatureGroup
    features: tuple[str, ...]
    entity_column: str

    def column(self, feature: str) -> str:
        return f"{self.group.name}__{feature}"


@dataclass(frozen=True)
class BuiltTrainingSet:
    table: pa.Table
    invalid_labels: int  # label records of the type that failed validation (counted, not used)
    requests: tuple[FeatureRequest, ...]


def build_training_set(
    labels: str,
    requests: Sequence[FeatureRequest],
    *,
    time_column: str,
    label_type: str,
    source: str,
    settings: KafkaSettings,
    offline_root: Path,
    workers: int = 1,
) -> BuiltTrainingSet:
    """Label rows (`label_type` events of a topic, or a .parquet file), each feature as a prediction at the
    row's time sees it: as of 1 ms before it (the prediction rule, `processors.prediction`).

    The groups' source events are read from Kafka or the raw archive (`source`) up to the last
    label time, and joined by `point_in_time_join`. Raises `ProcessorsError` on unusable labels.
    """
    import pyarrow.parquet as pq

    if labels.endswith(".parquet"):
        table, invalid = pq.read_table(labels), 0
    else:
        rows, invalid = labels_from_topic(labels, label_type, settings)
        table = pa.Table.from_pylist(rows)
    if not table.num_rows:
        msg = f"no label rows in {labels}"
        raise ProcessorsError(msg)
    columns = table.column_names
    if time_column not in columns:
        msg = f"label rows have no column {time_column!r} for the time (columns: {', '.join(columns)})"
        raise ProcessorsError(msg)
    for r in requests:
        if r.entity_column not in columns:
            msg = f"{r.group.ref}: label rows have no column {r.entity_column!r} for its entity; map it to a column"
            raise ProcessorsError(msg)
    until = int(label_times(table, time_column).max()) + 1
    events = read_group_events([r.group for r in requests], source, until, settings, offline_root)
    joined = point_in_time_join(table, time_column, requests, events, workers=workers, before=True)
    return BuiltTrainingSet(joined, invalid, tuple(requests))


def read_group_events(
    groups: Sequence[FeatureGroup], source: str, until: int, settings: KafkaSettings, offline_root: Path
) -> dict[str, Sequence[SourceRow]]:
    """Each group's validated source rows before `until` (epoch ms), from Kafka or the raw archive."""
    from backfill.source import read_chunks

    events: dict[str, Sequence[SourceRow]] = {}
    read: dict[tuple[str, str], list[SourceRow]] = {}  # groups on the same topic and event type share one read
    for group in groups:
        found = read.get((group.topic, group.event_type))
        if found is None:
            found = read[(group.topic, group.event_type)] = []
            for chunk in read_chunks(group, source, 0, until, settings=settings, offline_root=offline_root,  # type: ignore[arg-type]
                                     chunk_size=200_000):  # fmt: skip
                found += chunk.rows
        events[group.ref] = found
    return events


def labels_from_topic(topic: str, label_type: str, settings: KafkaSettings) -> tuple[list[dict[str, Any]], int]:
    """Valid label events as rows, and how many records of the type were invalid (skipped, counted).

    Routed exactly as the stream processor routes them: the event_type header, else the body's.
    Raises `UnknownEventTypeError` for a type no event class has.
    """
    from streams.codec import Rejection
    from streams.events.registry import event_class
    from streams.replay import ReplayRange, replay
    from streams.routing import Accepted, RecordRouter

    cls = event_class(label_type)
    router = RecordRouter([cls], max_bytes=settings.max_message_bytes, max_future_ms=settings.max_future_ms)
    rows: list[dict[str, Any]] = []
    invalid = 0
    now = int(time.time() * 1000)
    for batch in replay(topic, ReplayRange(), settings):
        for m in batch:
            routed = router.route(m, now)
            if isinstance(routed, Accepted):
                rows.append(dict(routed.event.__dict__))
            elif isinstance(routed, Rejection) and routed.expected_type == cls.type_name():
                invalid += 1  # dead-lettered by whoever consumed it first; here it is counted, not used
    return rows, invalid


def point_in_time_join(
    labels: pa.Table,
    time_column: str,
    requests: Sequence[FeatureRequest],
    events: Mapping[str, Sequence[SourceRow]],
    *,
    workers: int = 1,
    before: bool = False,
    event_times: bool = False,
) -> pa.Table:
    """`labels` with one column per requested feature (`<group>__<feature>`), rows in the same order.

    Values as of each label's time; with `before`, as of `features_instant(time)` — strictly
    before it, the prediction rule (`processors.prediction`), which training sets follow.

    `events[group.ref]` are the group's validated source rows, in any order (ties of `last` are
    broken by value, as everywhere). `workers` > 1 joins groups in parallel, in forked processes
    that share the events copy-on-write (nothing is pickled but the finished columns).
    With `event_times`, each group also gets `event_time_column(group)`: the time of its latest
    event as of the label's instant (null where its features are), the time an online record
    read at that instant carries.
    """
    times = label_times(labels, time_column)
    job = _Job(labels, features_instant(times) if before else times, tuple(requests), events, event_times)
    with gc_paused():
        if workers > 1 and len(requests) > 1:
            results = _forked(job, min(workers, len(requests)))
        else:
            results = [job.group_columns(i) for i in range(len(requests))]
    out = labels
    for columns in results:
        for name, column in columns:
            out = out.append_column(name, column)
    return out


@dataclass(frozen=True)
class _Job:
    labels: pa.Table
    times: np.ndarray
    requests: tuple[FeatureRequest, ...]
    events: Mapping[str, Sequence[SourceRow]]
    event_times: bool = False

    def group_columns(self, index: int) -> list[tuple[str, pa.Array]]:
        """The requested features of one group as of every label time."""
        request = self.requests[index]
        group, times = request.group, self.times
        engine = GroupEngine(group)
        # Exactly the events the stream accepts: filter, key, lateness and expressions, as `apply` judges them.
        judged = engine.evaluate(self.events.get(group.ref, ()))
        keyed = judged.batch
        entities = pa.array(keyed.entities, type=pa.string()).dictionary_encode()
        line = Timeline.of(entities.indices.to_numpy(zero_copy_only=False).astype(np.int64), engine.times(keyed))
        queries = AsOf(line, _codes(self.labels.column(request.entity_column), entities.dictionary), times)
        # Never seen by t, or seen longer than the TTL ago: null, as an online read would be.
        live = queries.found & (times - queries.latest_time <= group.ttl_ms)
        features = {f.name: f for f in group.features}
        out = []
        for name in request.features:
            feature = features[name]
            values = judged.values[name]
            if feature.window is None:
                assert values is not None  # row-level features always have an expression
                column = queries.latest(values)
            else:
                column = queries.window(feature.window, values)
            out.append((request.column(name), pa.array(column.values, mask=~(column.valid & live))))
        if self.event_times:
            out.append((event_time_column(group.name), pa.array(queries.latest_time, pa.int64(), mask=~live)))
        return out


_FORKED_JOB: _Job | None = None


def _forked(job: _Job, workers: int) -> list[list[tuple[str, pa.Array]]]:
    global _FORKED_JOB
    _FORKED_JOB = job  # what forked workers read (inherited memory, not pickled)
    # Frozen objects are never scanned by a collector again: a worker's GC would otherwise touch
    # (and so copy) every page of the parent's millions of rows.
    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_forked_group, range(len(job.requests)), chunksize=1)
    finally:
        gc.unfreeze()
        _FORKED_JOB = None


def _forked_group(index: int) -> list[tuple[str, pa.Array]]:
    assert _FORKED_JOB is not None  # set by the parent before it forked
    return _FORKED_JOB.group_columns(index)


def event_time_column(group: str) -> str:
    """The column `point_in_time_join(..., event_times=True)` adds for `group`."""
    return f"__event_time__{group}"


def label_times(labels: pa.Table, time_column: str) -> np.ndarray:
    """The labels' times as UTC epoch ms: integers as they are, timestamps converted from their unit."""
    column = labels.column(time_column)
    if column.null_count:
        msg = f"label column {time_column!r} has {column.null_count} null time(s); every label needs one"
        raise ProcessorsError(msg)
    if pa.types.is_timestamp(column.type):
        # Naive timestamps are taken as UTC, like every time in affresco.
        column = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
    elif not pa.types.is_integer(column.type):
        msg = f"label column {time_column!r} must hold epoch milliseconds or timestamps, not {column.type}"
        raise ProcessorsError(msg)
    return column.to_numpy().astype(np.int64)


def _codes(entities: pa.ChunkedArray, known: pa.Array) -> np.ndarray:
    """Each label's entity code, its position in `known` (-1: null or never seen); keys compare as strings."""
    if not pa.types.is_string(entities.type) and not pa.types.is_large_string(entities.type):
        # Python's str() of each key, as the engine keys entities (Arrow would write True as "true").
        entities = pa.chunked_array(
            [pa.array([None if v is None else str(v) for v in entities.to_pylist()], pa.string())]
        )
    return pc.index_in(entities, value_set=known).fill_null(-1).to_numpy().astype(np.int64)
