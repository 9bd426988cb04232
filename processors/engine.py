"""Applying a batch of source events to a feature group's per-entity state: the one code path.

The stream processor calls `GroupEngine.apply` on each micro-batch; backfill calls it on large
chunks of the replayed log. Both therefore accept, reject and aggregate events identically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from processors.definitions import Feature, FeatureGroup
from processors.dsl import CompiledExpression, DslEvaluationError
from processors.kernels import TileMap, fold_batch, value_as_of, window_start
from processors.kernels.aggregations import last_wins

log = logging.getLogger(__name__)

__all__ = ["ApplyResult", "EntityState", "EntityUpdate", "GroupEngine", "Keyed", "Rejected", "SourceRow", "Watermark"]


@dataclass
class EntityState:
    """Everything the group remembers about one entity."""

    u: int = -1  # greatest accepted event time
    # Accepted events so far. With `u` it versions the entity's record, (u, rev): it only grows, and
    # at the end of a stream it is the same however partitions interleaved or a crash cut the run.
    rev: int = 0
    tiles: dict[str, TileMap] = field(default_factory=dict)  # windowed feature -> tiles
    rows: dict[str, list[Any]] = field(default_factory=dict)  # row-level feature -> [event_time, value]

    def to_bytes(self) -> bytes:
        """Compact bytes for the online store (serving recomputes values as of now from them)."""
        return orjson.dumps(
            {"u": self.u, "rev": self.rev, "tiles": self.tiles, "rows": self.rows},
            # Sorted keys: equal states give equal bytes, whatever order tiles were created in.
            option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> EntityState:
        data = orjson.loads(raw)
        tiles = {f: {int(k): v for k, v in t.items()} for f, t in data["tiles"].items()}
        return cls(u=data["u"], rev=data["rev"], tiles=tiles, rows=data["rows"])


@dataclass
class Watermark:
    """Event-time progress of a source topic: the slowest partition's greatest event time.

    An event is late when it is older than `value(lateness)`: the slowest partition's progress minus
    the allowed lateness. Until every partition has been seen there is no watermark (nothing is late),
    so a fast partition in catch-up never makes a slow one's events late.
    """

    partitions: int
    progress: dict[int, int] = field(default_factory=dict)

    def advance(self, partition_max: Mapping[int, int]) -> None:
        for p, t in partition_max.items():
            if t > self.progress.get(p, -1):
                self.progress[p] = t

    def value(self, lateness_ms: int) -> int | None:
        if len(self.progress) < self.partitions:
            return None
        return min(self.progress.values()) - lateness_ms


@dataclass(frozen=True)
class SourceRow:
    """A validated source event (its fields) and where it came from."""

    fields: Mapping[str, Any]
    partition: int
    offset: int
    raw: bytes = b""  # the original record value, for the DLQ
    key: bytes | None = None


@dataclass(frozen=True)
class EntityUpdate:
    """The values of one entity as of `event_time`; `(event_time, revision)` orders its versions."""

    entity: str
    event_time: int
    revision: int
    values: dict[str, Any]
    partition: int
    offset: int
    state: bytes


@dataclass(frozen=True)
class Rejected:
    row: SourceRow
    reason: str  # DLQ reason code
    error: str


@dataclass
class ApplyResult:
    updates: list[EntityUpdate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    filtered: int = 0
    accepted: int = 0


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


class GroupEngine:
    """Folds batches of source events into per-entity state and reports the new values."""

    def __init__(self, group: FeatureGroup) -> None:
        self.group = group
        self._windowed = [f for f in group.features if f.window is not None]
        self._row_level = [f for f in group.features if f.window is None]
        self._time_field = group.spec.event_time
        self._null_key = f"entity key {group.spec.key!r} is null"
        # Every field the group reads: loaded as columns in one pass.
        self._fields = {self._time_field, *group.key.fields, *(group.filter.fields if group.filter else ())}
        self._fields.update(name for f in group.features if f.expr is not None for name in f.expr.fields)

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

    def keyed(self, rows: Sequence[SourceRow]) -> Keyed:
        """Filter `rows` and evaluate their entity keys; a failing or null key rejects the row.

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
        if _all_true(keep) and None not in keys and "" not in keys:  # the common case: every row kept
            # (C-level scans: this runs on every micro-batch and on million-row training-set batches)
            batch.entities = keys if set(map(type, keys)) <= {str} else [str(k) for k in keys]
            return batch
        passes = keep if keep is not None else [True] * len(keys)
        kept: list[int] = []
        rejected: list[Rejected] = []
        for i, (key, passed) in enumerate(zip(keys, passes, strict=True)):
            if passed is not True:
                continue
            if key is None or key == "":
                rejected.append(Rejected(batch.rows[i], "validation_error", self._null_key))
            else:
                kept.append(i)
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
                out.rejected.append(Rejected(row, "processing_error", f"{group.ref}: {exc}"))
                continue
            if key is None or key == "":
                out.rejected.append(Rejected(row, "validation_error", self._null_key))
                continue
            out.rows.append(row)
            out.entities.append(str(key))
        return out

    def times(self, batch: Keyed) -> np.ndarray:
        """The kept rows' event times."""
        return np.asarray(batch.column(self._time_field), dtype=np.int64)

    @staticmethod
    def feature_values(feature: Feature, batch: Keyed) -> list[Any] | None:
        """Each kept row's value of `feature`'s expression (None: a count of events, no expression)."""
        if feature.expr is None:
            return None
        try:
            return feature.expr.evaluate_columns(batch.columns(feature.expr), len(batch.rows))
        except DslEvaluationError:
            return _evaluate_many(feature.expr, [r.fields for r in batch.rows])

    def apply(
        self, states: dict[str, EntityState], rows: Sequence[SourceRow], watermark: int | None = None
    ) -> ApplyResult:
        """Fold `rows` (in arrival order) into `states` (mutated); one update per touched entity.

        Events older than `watermark` (the source's progress minus the allowed lateness, see
        `Watermark`) are rejected as late instead of merged.
        """
        result = ApplyResult()
        group = self.group
        batch = self.keyed(rows)
        result.filtered = batch.filtered
        result.rejected.extend(batch.rejected)
        kept: list[int] = []  # positions in `batch` of the accepted events
        for i, (entity, t) in enumerate(zip(batch.entities, batch.column(self._time_field), strict=True)):
            if watermark is not None and t < watermark:
                result.rejected.append(
                    Rejected(
                        batch.rows[i],
                        "late_event",
                        f"{group.ref}: event_time {t} is {watermark - t} ms behind the watermark {watermark} "
                        f"(slowest source partition minus the allowed lateness of {group.lateness_ms} ms)",
                    )
                )
                continue
            state = states.get(entity)
            if state is None:
                state = states[entity] = EntityState()
            if t > state.u:
                state.u = t
            state.rev += 1
            kept.append(i)
        result.accepted = len(kept)
        if not kept:
            return result
        if len(kept) < len(batch.rows):
            batch = batch.subset(kept)
        entities, accepted = batch.entities, batch.rows

        uniques: dict[str, int] = {}
        codes = np.fromiter(
            (uniques.setdefault(e, len(uniques)) for e in entities), dtype=np.int64, count=len(entities)
        )
        times = self.times(batch)
        touched = [states[e] for e in uniques]
        for f in self._windowed:
            assert f.window is not None  # narrowed by construction of _windowed
            values = self.feature_values(f, batch)
            fold_batch(f.window, [s.tiles.setdefault(f.name, {}) for s in touched], codes, times, values)
        for f in self._row_level:
            values = self.feature_values(f, batch)
            assert values is not None  # row-level features always have an expression
            for entity, value, t in zip(entities, values, times.tolist(), strict=True):
                latest = states[entity].rows
                slot = latest.get(f.name)
                pair = [t, value]
                latest[f.name] = pair if slot is None else last_wins(slot, pair)

        last_seen: dict[str, SourceRow] = dict(zip(entities, accepted, strict=True))
        for entity, state in zip(uniques, touched, strict=True):
            self._evict(state)
            row = last_seen[entity]
            result.updates.append(
                EntityUpdate(
                    entity=entity,
                    event_time=state.u,
                    revision=state.rev,
                    values=self.values(state, state.u),
                    partition=row.partition,
                    offset=row.offset,
                    state=state.to_bytes(),
                )
            )
        return result

    def _evict(self, state: EntityState) -> None:
        # Values are only ever taken as of u or later (updates, serving's "now"): older tiles are dead.
        horizon = state.u
        for f in self._windowed:
            assert f.window is not None
            tiles = state.tiles.get(f.name)
            if not tiles:
                continue
            first_needed = window_start(f.window, horizon) // f.window.hop_ms
            for index in [k for k in tiles if k < first_needed]:
                del tiles[index]


def _all_true(keep: list[Any] | None) -> bool:
    """Whether a filter kept every row (no filter: yes); only `True` keeps one."""
    return keep is None or (keep.count(True) == len(keep) and set(map(type, keep)) <= {bool})


def _evaluate_many(expr: CompiledExpression, rows: list[Mapping[str, Any]]) -> list[Any]:
    """Values of `expr`; a row that breaks the schema (impossible after validation) counts as null."""
    try:
        return expr.evaluate_many(rows)
    except DslEvaluationError:
        out: list[Any] = []
        for row in rows:
            try:
                out.append(expr.evaluate(row))
            except DslEvaluationError as exc:
                log.warning("%s: %s; using null", expr.text, exc)
                out.append(None)
        return out
