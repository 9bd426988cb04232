"""Applying a batch of source events to a feature group's state: the one code path.

The stream processor calls `GroupEngine.apply` on each micro-batch and `finalize` when its
watermark moves; backfill does the same on large chunks of the replayed log; training sets use
`evaluate` (filter, key, lateness and expressions) before the batch as-of kernel. All of them
therefore accept, reject and aggregate events identically.

A batch goes through two phases. `evaluate` and the kernels' `batch_partials` depend on the
records' data and touch no state; a record that makes them fail is rejected on its own
(`processing_error`, with the step) and the batch goes on. Only then are the partials merged into
the entities' state, which involves nothing but values already checked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import numpy as np

from processors.definitions import Feature, FeatureGroup
from processors.dsl import CompiledExpression, DslEvaluationError
from processors.entity import EntityHistory, EntityState, GroupState, OpenHour
from processors.kernels import TileMap, value_as_of, window_start
from processors.kernels.aggregations import last_wins, merge_partial
from processors.kernels.tiles import Segment, batch_partials, merge_segments

log = logging.getLogger(__name__)

__all__ = [
    "HISTORY_GRACE_MS",
    "HOUR_MS",
    "ApplyResult",
    "EntityState",
    "EntityUpdate",
    "Evaluated",
    "GroupEngine",
    "GroupState",
    "HistoryRow",
    "Keyed",
    "Rejected",
    "SourceRow",
]

#: The offline history has one row per entity and event-time hour with accepted events.
HOUR_MS = 3_600_000
#: An hour still open this long after the furthest source partition passed its end is written
#: anyway (counted as forced): a source partition that never carries the group's events would
#: otherwise hold the history back, and its memory, forever.
HISTORY_GRACE_MS = 12 * HOUR_MS
#: Entity keys longer than this cannot be written (FeatureUpdate.entity_key, the stores' limits).
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class SourceRow:
    """A validated source event (its fields) and where it came from.

    `prior_max` is the greatest event time among the valid events of the same type that precede
    it in its source partition (-1: none): the reader sets it, the engine decides lateness by it.
    """

    fields: Mapping[str, Any]
    partition: int
    offset: int
    raw: bytes = b""  # the original record value, for the DLQ
    key: bytes | None = None
    prior_max: int = -1


@dataclass(frozen=True)
class EntityUpdate:
    """The values of one entity as of `event_time`; `(event_time, revision)` orders its versions.

    `frontier` (source partition -> offset of the entity's last accepted event there) identifies
    the content: two updates with the same frontier carry the same values and state.
    """

    entity: str
    event_time: int
    revision: int
    values: dict[str, Any]
    partition: int
    offset: int
    state: bytes
    frontier: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryRow:
    """One row of the offline history: the entity's values as of `event_time`, its last accepted
    event in one hour, written once no accepted event at or before that time can still arrive.

    `revision` counts the entity's accepted events up to `event_time`. `forced`: written before
    the watermark passed it (see `HISTORY_GRACE_MS`); `at_end`: written at the end of a bounded run.
    """

    entity: str
    event_time: int
    revision: int
    values: dict[str, Any]
    forced: bool = False
    at_end: bool = False


@dataclass(frozen=True)
class Rejected:
    row: SourceRow
    reason: str  # DLQ reason code
    error: str
    step: str = ""


@dataclass
class ApplyResult:
    updates: list[EntityUpdate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    filtered: int = 0
    accepted: int = 0
    late: int = 0


@dataclass
class Keyed:
    """The rows of a batch that pass the group's filter, with their entity keys; the others counted."""

    rows: list[SourceRow] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    filtered: int = 0
    _columns: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    def load(self, names: Iterable[str]) -> None:
        """Build the columns of `names` (each a C-level pass over the rows' fields)."""
        names = sorted(set(names) - set(self._columns))
        if not names:
            return
        if not self.rows:
            self._columns.update({name: [] for name in names})
            return
        dicts = [r.fields for r in self.rows]
        try:
            if len(names) == 1:
                self._columns[names[0]] = list(map(itemgetter(names[0]), dicts))
                return
            # All fields of a row in one lookup (its dict is in cache then), then a C-level pass per column.
            rows = list(map(itemgetter(*names), dicts))
        except KeyError:  # a row without some field: that field reads as None
            rows = [tuple(d.get(name) for name in names) for d in dicts]
        for j, name in enumerate(names):
            self._columns[name] = list(map(itemgetter(j), rows))

    def column(self, name: str) -> list[Any]:
        """Field `name` of every kept row (None where missing), built once."""
        if name not in self._columns:
            self.load([name])
        return self._columns[name]

    def subset(self, positions: Sequence[int], entities: list[str] | None = None) -> Keyed:
        """The rows at `positions` (nothing rejected or filtered), with their columns sliced from these."""
        out = Keyed(
            rows=[self.rows[i] for i in positions],
            entities=entities if entities is not None else [self.entities[i] for i in positions],
        )
        out._columns = {name: [column[i] for i in positions] for name, column in self._columns.items()}
        return out

    def columns(self, expr: CompiledExpression) -> dict[str, list[Any]]:
        return {name: self.column(name) for name in expr.fields}


@dataclass
class Evaluated:
    """A batch judged by the group: the accepted rows (`batch`) with every feature's value per row.

    Accepted means: passes the filter, has a usable key, is not late, and every expression of the
    group evaluates on it. `values[name]` is None for a count of events (no expression).
    """

    batch: Keyed
    values: dict[str, list[Any] | None]
    rejected: list[Rejected]
    filtered: int = 0
    late: int = 0

    def without(self, failed: Mapping[int, Rejected]) -> Evaluated:
        """The same, minus the rows at the positions of `failed` (which join the rejected)."""
        keep = [i for i in range(len(self.batch.rows)) if i not in failed]
        values = {name: None if column is None else [column[i] for i in keep] for name, column in self.values.items()}
        rejected = [*self.rejected, *failed.values()]
        return Evaluated(self.batch.subset(keep), values, rejected, self.filtered, self.late)


class GroupEngine:
    """Folds batches of source events into per-entity state and reports the new values."""

    def __init__(self, group: FeatureGroup) -> None:
        self.group = group
        self._windowed = [f for f in group.features if f.window is not None]
        self._row_level = [f for f in group.features if f.window is None]
        self._time_field = group.spec.event_time
        self._null_key = f"{group.ref}: entity key {group.spec.key!r} is null"
        # Every field the group reads: loaded as columns in one pass.
        self._fields = {self._time_field, *group.key.fields, *(group.filter.fields if group.filter else ())}
        self._fields.update(name for f in group.features if f.expr is not None for name in f.expr.fields)

    # -- reading values --------------------------------------------------------------------------

    def values(self, state: EntityState, t: int) -> dict[str, Any]:
        """The group's values as of `t` from an entity's state (no event after `t` may be in it)."""
        out: dict[str, Any] = {}
        for f in self.group.features:
            if f.window is not None:
                out[f.name] = value_as_of(f.window, state.tiles.get(f.name, {}), t)
            else:
                row = state.rows.get(f.name)
                out[f.name] = row[1] if row is not None and row[0] <= t else None
        return out

    # -- judging a batch (no state) --------------------------------------------------------------

    def keyed(self, rows: Sequence[SourceRow]) -> Keyed:
        """Filter `rows` and evaluate their entity keys; a failing, null or unusable key rejects the row.

        Evaluates whole columns at once; if any row fails, the rows are evaluated one by one, so
        the failing ones are rejected with their own error (and only rows the filter keeps are keyed).
        """
        group = self.group
        batch = Keyed(rows=list(rows))
        batch.load(self._fields)
        try:
            keep = (
                None if group.filter is None else group.filter.evaluate_columns(batch.columns(group.filter), len(rows))
            )
            keys = group.key.evaluate_columns(batch.columns(group.key), len(rows))
        except DslEvaluationError:
            return self._keyed_rows(rows)
        if _all_true(keep) and _all_usable(keys):  # the common case: every row kept
            # (C-level scans: this runs on every micro-batch and on million-row training-set batches)
            batch.entities = keys if set(map(type, keys)) <= {str} else [str(k) for k in keys]
            return batch
        passes = keep if keep is not None else [True] * len(keys)
        kept: list[int] = []
        rejected: list[Rejected] = []
        for i, (key, passed) in enumerate(zip(keys, passes, strict=True)):
            if passed is not True:
                continue
            problem = self._key_problem(key)
            if problem is None:
                kept.append(i)
            else:
                rejected.append(Rejected(batch.rows[i], "validation_error", problem, "key"))
        out = batch.subset(kept, [str(keys[i]) for i in kept])
        out.rejected, out.filtered = rejected, sum(1 for p in passes if p is not True)
        return out

    def _keyed_rows(self, rows: Sequence[SourceRow]) -> Keyed:
        out = Keyed()
        group = self.group
        for row in rows:
            fields = row.fields
            try:
                if group.filter is not None and group.filter.evaluate(fields) is not True:
                    out.filtered += 1
                    continue
                key = group.key.evaluate(fields)
            except DslEvaluationError as exc:
                out.rejected.append(Rejected(row, "processing_error", f"{group.ref}: {exc}", "filter/key"))
                continue
            problem = self._key_problem(key)
            if problem is not None:
                out.rejected.append(Rejected(row, "validation_error", problem, "key"))
                continue
            out.rows.append(row)
            out.entities.append(str(key))
        return out

    def _key_problem(self, key: Any) -> str | None:
        if key is None or key == "":
            return self._null_key
        text = str(key)
        if len(text) > MAX_KEY_CHARS:
            return f"{self.group.ref}: entity key of {len(text)} characters; at most {MAX_KEY_CHARS} are stored"
        return None

    def times(self, batch: Keyed) -> np.ndarray:
        """The kept rows' event times."""
        return np.asarray(batch.column(self._time_field), dtype=np.int64)

    def evaluate(self, rows: Sequence[SourceRow]) -> Evaluated:
        """Judge `rows`: filter, key, lateness, every feature's expression. Touches no state."""
        keyed = self.keyed(rows)
        rejected, filtered = list(keyed.rejected), keyed.filtered
        batch, late = self._on_time(keyed)
        rejected += late
        values: dict[str, list[Any] | None] = {}
        failed: dict[int, Rejected] = {}
        for feature in self.group.features:
            column, errors = _feature_values(feature, batch)
            values[feature.name] = column
            for i, error in errors.items():
                failed.setdefault(
                    i,
                    Rejected(
                        batch.rows[i], "processing_error", f"{self.group.ref}: {error}", f"feature {feature.name}"
                    ),
                )
        out = Evaluated(batch, values, rejected, filtered, len(late))
        return out.without(failed) if failed else out

    def feature_values(self, feature: Feature, batch: Keyed) -> list[Any] | None:
        """Each kept row's value of `feature`'s expression (None: a count of events, no expression)."""
        return _feature_values(feature, batch)[0]

    def _on_time(self, batch: Keyed) -> tuple[Keyed, list[Rejected]]:
        """Split off the late rows: older than the greatest earlier event time of their partition minus
        the allowed lateness (a pure function of the log: the same in a stream, a restart and a replay)."""
        lateness = self.group.lateness_ms
        times = batch.column(self._time_field)
        late = [i for i, (row, t) in enumerate(zip(batch.rows, times, strict=True)) if t < row.prior_max - lateness]
        if not late:
            return batch, []
        rejected = [
            Rejected(batch.rows[i], "late_event", self._late_message(batch.rows[i], times[i]), "lateness") for i in late
        ]
        late_set = set(late)
        return batch.subset([i for i in range(len(batch.rows)) if i not in late_set]), rejected

    def _late_message(self, row: SourceRow, t: int) -> str:
        limit = row.prior_max - self.group.lateness_ms
        return (
            f"{self.group.ref}: event_time {t} ({_iso(t)}) is {limit - t} ms older than {limit} ({_iso(limit)}): "
            f"partition {row.partition} had already reached {row.prior_max} ({_iso(row.prior_max)}) before "
            f"offset {row.offset}, and the allowed lateness is {self.group.lateness_ms} ms"
        )

    # -- folding a batch into state --------------------------------------------------------------

    def apply(self, state: GroupState, rows: Sequence[SourceRow]) -> ApplyResult:
        """Fold `rows` into `state` (mutated); one update per touched entity.

        Late rows, rows the filter drops and rows whose key or expressions fail are not folded
        (see `evaluate`); their open history hours are registered in `state` for `finalize`.
        """
        judged = self.evaluate(rows)
        segments: dict[str, list[Segment]] | None = None
        while judged.batch.rows and segments is None:
            segments, failed = self._partials(judged)
            if segments is None:
                # Rows failing on their own leave; if none does (a failure of the combination),
                # the whole batch is rejected rather than risk a half-folded state.
                judged = judged.without(
                    failed or {i: _failed(r, self.group.ref) for i, r in enumerate(judged.batch.rows)}
                )
        result = ApplyResult(rejected=judged.rejected, filtered=judged.filtered, late=judged.late)
        if judged.batch.rows and segments is not None:
            result.accepted = len(judged.batch.rows)
            result.updates = self._commit(state, judged, segments)
        return result

    def _partials(self, judged: Evaluated) -> tuple[dict[str, list[Segment]] | None, dict[int, Rejected]]:
        """Each windowed feature's new partials. The kernels work on the records' values, so a failure
        there is isolated: None and the rows failing on their own (to be rejected)."""
        codes, _ = _codes(judged.batch.entities)
        times = self.times(judged.batch)
        try:
            return {
                f.name: batch_partials(f.window, codes, times, judged.values[f.name])  # type: ignore[arg-type]
                for f in self._windowed
            }, {}
        except Exception:  # any failure of a kernel on some record: find the record
            log.exception("%s: a kernel failed on a batch of %d rows; isolating the rows", self.group.ref, len(codes))
        failed: dict[int, Rejected] = {}
        one = np.zeros(1, dtype=np.int64)
        for i, row in enumerate(judged.batch.rows):
            for f in self._windowed:
                column = judged.values[f.name]
                try:
                    batch_partials(f.window, one, times[i : i + 1], None if column is None else column[i : i + 1])  # type: ignore[arg-type]
                except Exception as exc:
                    error = f"{self.group.ref}: aggregating {f.name} failed: {type(exc).__name__}: {exc}"
                    failed[i] = Rejected(row, "processing_error", error, f"aggregate {f.name}")
                    break
        return None, failed

    def _commit(self, state: GroupState, judged: Evaluated, segments: dict[str, list[Segment]]) -> list[EntityUpdate]:
        batch = judged.batch
        entities = state.entities
        codes, uniques = _codes(batch.entities)
        touched: list[EntityState] = []
        for entity in uniques:
            entity_state = entities.get(entity)
            if entity_state is None:
                entity_state = entities[entity] = EntityState()
            touched.append(entity_state)
        times = batch.column(self._time_field)
        open_hours = state.open_hours
        marks: list[OpenHour] = []
        for code, row, t in zip(codes.tolist(), batch.rows, times, strict=True):
            s = touched[code]
            history = s.history
            if history is None:  # every earlier event of the entity is in written history rows
                history = s.history = EntityHistory(final_rev=s.rev, final_rows=dict(s.rows))
            hour = t // HOUR_MS
            mark = history.hours.get(hour)
            if mark is None:
                mark = history.hours[hour] = OpenHour(t)
                open_hours.setdefault(hour, set()).add(uniques[code])
            elif t > mark.u:
                mark.u = t
            mark.n += 1
            marks.append(mark)
            if t > s.u:
                s.u = t
            s.rev += 1
            if row.offset > s.frontier.get(row.partition, -1):
                s.frontier[row.partition] = row.offset
        for f in self._windowed:
            merge_segments(f.window, [s.tiles.setdefault(f.name, {}) for s in touched], segments[f.name])  # type: ignore[arg-type]
        for f in self._row_level:
            column = judged.values[f.name]
            assert column is not None  # row-level features always have an expression
            name = f.name
            for code, value, t, mark in zip(codes.tolist(), column, times, marks, strict=True):
                pair = [t, value]
                latest = touched[code].rows
                slot = latest.get(name)
                latest[name] = pair if slot is None else last_wins(slot, pair)
                in_hour = mark.rows.get(name)
                mark.rows[name] = pair if in_hour is None else last_wins(in_hour, pair)

        # History rows not written yet may need tiles the online state drops: those of an open hour,
        # or of any hour a later event can still open — none older than the watermark before this
        # batch, nor than this batch's own events (a backfill folds a chunk hour by hour).
        # Without a watermark yet (a partition not seen), any hour after the forced ones may still open.
        horizon = state.horizon(self.group.lateness_ms)
        keep = -(2**62) if horizon is None else min(horizon, min(times))
        keep = max(keep, state.furthest - HISTORY_GRACE_MS)  # older hours are forced out anyway
        last_seen: dict[str, SourceRow] = dict(zip(batch.entities, batch.rows, strict=True))
        updates = []
        for entity, s in zip(uniques, touched, strict=True):
            self._evict(s, keep)
            row = last_seen[entity]
            values = self.values(s, s.u)
            s.last_values = (s.rev, values)
            updates.append(
                EntityUpdate(
                    entity=entity,
                    event_time=s.u,
                    revision=s.rev,
                    values=values,
                    partition=row.partition,
                    offset=row.offset,
                    state=s.to_bytes(),
                    frontier=dict(s.frontier),
                )
            )
        return updates

    def _evict(self, state: EntityState, keep: int) -> None:
        """Drop the tiles the online state no longer answers from (older than its window as of u);
        keep in `retained` those a history row as of `keep` or later (or of an open hour) needs."""
        history = state.history
        if history is not None and history.hours:
            keep = min(keep, history.hours[min(history.hours)].u)
        for f in self._windowed:
            spec = f.window
            assert spec is not None
            keep_from = window_start(spec, keep) // spec.hop_ms
            retained = state.retained.get(f.name)
            if retained:
                for k in [k for k in retained if k < keep_from]:
                    del retained[k]
            tiles = state.tiles.get(f.name)
            if not tiles:
                continue
            first_needed = window_start(spec, state.u) // spec.hop_ms
            dead = [k for k in tiles if k < first_needed]
            if not dead:
                continue
            for k in dead:
                partial = tiles.pop(k)
                if k >= keep_from:
                    if retained is None:
                        retained = state.retained[f.name] = {}
                    retained[k] = merge_partial(spec.agg, retained.get(k), partial)

    # -- the offline history ---------------------------------------------------------------------

    def finalize(self, state: GroupState, horizon: int | None, *, force_before: int | None = None) -> list[HistoryRow]:
        """History rows of every open hour that ends at or before `horizon` (the watermark: no event
        older than it can still be accepted), oldest hour first.

        `force_before` also writes hours ending before it although the watermark has not passed
        them (rows marked `forced`); `horizon` None: no watermark yet.
        """
        limit = horizon if force_before is None else max(force_before, horizon if horizon is not None else -1)
        if limit is None or not state.open_hours:
            return []
        out: list[HistoryRow] = []
        for hour in sorted(state.open_hours):
            end = (hour + 1) * HOUR_MS
            if end > limit:
                break
            forced = horizon is None or end > horizon
            for entity in sorted(state.open_hours.pop(hour)):
                out.append(self._history_row(entity, state.entities[entity], hour, forced))
        return out

    def finalize_all(self, state: GroupState) -> list[HistoryRow]:
        """Every open hour: the input is complete (the end of a bounded replay or run)."""
        return self.finalize(state, (max(state.open_hours) + 1) * HOUR_MS if state.open_hours else None)

    def finalize_at_end(self, state: GroupState) -> list[HistoryRow]:
        """Every open hour, at the end of a bounded run over a live topic (`--until-idle`).

        Exact for the log as it stood; rows are marked `at_end`, since events appended later could
        still belong to those hours.
        """
        return [replace(row, at_end=True) for row in self.finalize_all(state)]

    def _history_row(self, entity: str, state: EntityState, hour: int, forced: bool) -> HistoryRow:
        history = state.history
        assert history is not None  # an entity in open_hours has an open hour
        mark = history.hours.pop(hour)
        cached = state.last_values
        if cached is not None and cached[0] == state.rev and mark.u == state.u:
            # No accepted event is later than this hour's last one, so the values as of it are those
            # of the entity's last update (computed from the same state: `rev` has not moved since).
            for f in self._row_level:
                before, in_hour = history.final_rows.get(f.name), mark.rows.get(f.name)
                pair = in_hour if before is None else (before if in_hour is None else last_wins(before, in_hour))
                if pair is not None:
                    history.final_rows[f.name] = pair
            return self._close_hour(entity, state, history, mark, dict(cached[1]), forced)
        values: dict[str, Any] = {}
        for f in self.group.features:
            if f.window is not None:
                window = _window_tiles(f, state.tiles.get(f.name, {}), state.retained.get(f.name, {}), mark.u)
                values[f.name] = value_as_of(f.window, window, mark.u)
            else:
                before, in_hour = history.final_rows.get(f.name), mark.rows.get(f.name)
                pair = in_hour if before is None else (before if in_hour is None else last_wins(before, in_hour))
                if pair is not None:
                    history.final_rows[f.name] = pair
                values[f.name] = None if pair is None else pair[1]
        return self._close_hour(entity, state, history, mark, values, forced)

    @staticmethod
    def _close_hour(
        entity: str, state: EntityState, history: EntityHistory, mark: OpenHour, values: dict[str, Any], forced: bool
    ) -> HistoryRow:
        history.final_rev += mark.n
        if not history.hours:
            state.history = None
        return HistoryRow(entity, mark.u, history.final_rev, values, forced)


def _window_tiles(feature: Feature, tiles: TileMap, retained: TileMap, t: int) -> TileMap:
    """The tiles of `feature`'s window as of `t`, from the online tiles and the retained ones."""
    spec = feature.window
    assert spec is not None
    last = t // spec.hop_ms
    first = last - spec.tiles + 1
    # Only the tiles that exist (an entity of a week-long window may have a handful of its 168).
    out: TileMap = {k: p for k, p in tiles.items() if first <= k <= last}
    for k, partial in retained.items():
        if first <= k <= last:
            out[k] = merge_partial(spec.agg, partial, out.get(k))
    return out


def _codes(entities: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Each row's entity code (position in the uniques, in first-seen order), and the uniques."""
    uniques: dict[str, int] = {}
    codes = np.fromiter((uniques.setdefault(e, len(uniques)) for e in entities), dtype=np.int64, count=len(entities))
    return codes, list(uniques)


def _feature_values(feature: Feature, batch: Keyed) -> tuple[list[Any] | None, dict[int, str]]:
    """`feature`'s value per row (None: a count of events), and the rows whose evaluation failed."""
    expr = feature.expr
    if expr is None:
        return None, {}
    try:
        return expr.evaluate_columns(batch.columns(expr), len(batch.rows)), {}
    except DslEvaluationError:
        pass
    out: list[Any] = []
    failed: dict[int, str] = {}
    for i, row in enumerate(batch.rows):
        try:
            out.append(expr.evaluate(row.fields))
        except DslEvaluationError as exc:
            out.append(None)
            failed[i] = str(exc)
    return out, failed


def _all_true(keep: list[Any] | None) -> bool:
    """Whether a filter kept every row (no filter: yes); only `True` keeps one."""
    return keep is None or (keep.count(True) == len(keep) and set(map(type, keep)) <= {bool})


def _all_usable(keys: list[Any]) -> bool:
    """Whether every key is non-null, non-empty and short enough (C-level checks on the common case)."""
    if None in keys or "" in keys:
        return False
    if set(map(type, keys)) <= {str}:
        return max(map(len, keys), default=0) <= MAX_KEY_CHARS
    return all(len(str(k)) <= MAX_KEY_CHARS for k in keys)


def _failed(row: SourceRow, ref: str) -> Rejected:
    error = f"{ref}: aggregating the batch failed and no single record fails alone; the batch is rejected"
    return Rejected(row, "processing_error", error, "aggregate")


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return "out of range"
