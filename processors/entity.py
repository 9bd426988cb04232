"""What a feature group remembers: per-entity state, the open history hours, and source progress.

`EntityState` is the online part (what the store holds: tiles, latest row-level values, version)
plus bookkeeping the stream needs but the store does not: the content key of the latest update
(`frontier`) and the entity's unfinished history hours (`history`). `GroupState` holds the
entities of one group (or of one shard of it), the index of open history hours and the progress
of each source partition, from which the history watermark comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from processors.kernels import TileMap

__all__ = ["EntityHistory", "EntityState", "GroupState", "OpenHour"]

_STATE_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS
#: How an integer beyond 64 bits (a huge sum of micro-units) is written in state bytes.
_BIG_INT = "$int"
_INT64 = 2**63


@dataclass
class OpenHour:
    """The accepted events of one entity in one event-time hour that is not final yet."""

    u: int  # greatest accepted event time in the hour
    n: int = 0  # accepted events in the hour
    rows: dict[str, list[Any]] = field(default_factory=dict)  # row-level feature -> latest [time, value] in the hour


@dataclass
class EntityHistory:
    """An entity's history rows still to be written: exists only while it has open hours.

    `final_rev` and `final_rows` describe the events of the hours already written (the revision
    and the row-level values as of the last written row).
    """

    final_rev: int
    final_rows: dict[str, list[Any]]
    hours: dict[int, OpenHour] = field(default_factory=dict)


@dataclass
class EntityState:
    """Everything the group remembers about one entity."""

    u: int = -1  # greatest accepted event time
    # Accepted events so far. With `u` it versions the entity's record, (u, rev): it only grows, and
    # at the end of a stream it is the same however partitions interleaved or a crash cut the run.
    rev: int = 0
    tiles: dict[str, TileMap] = field(default_factory=dict)  # windowed feature -> tiles
    rows: dict[str, list[Any]] = field(default_factory=dict)  # row-level feature -> [event_time, value]
    # Source partition -> offset of the entity's last accepted event there. The accepted events of an
    # entity are exactly its events up to these offsets (lateness is decided per partition), so this
    # identifies the content of the entity's values: the dedupe key of its feature updates.
    frontier: dict[int, int] = field(default_factory=dict)
    history: EntityHistory | None = None
    # Tiles that left the online state (older than its window as of u) but a history row may still
    # need: one of an open hour, or of an hour an event not yet read could still open.
    retained: dict[str, TileMap] = field(default_factory=dict)
    # (rev, values as of u) of the last update: an hour's history row when no event came after it.
    # A cache: not pickled into snapshots (recomputed when missing).
    last_values: tuple[int, dict[str, Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "last_values": None}

    def to_bytes(self) -> bytes:
        """Compact bytes for the online store (serving recomputes values as of now from them).

        Only the online part: the version, tiles and row-level values. Equal states give equal
        bytes, whatever order tiles were created in (sorted keys).
        """
        doc = {"u": self.u, "rev": self.rev, "tiles": self.tiles, "rows": self.rows}
        try:
            return orjson.dumps(doc, option=_STATE_OPTIONS)
        except TypeError:  # "Integer exceeds 64-bit range": a sum of micro-units too big for JSON's int64
            return orjson.dumps(_tag_big_ints(doc), option=_STATE_OPTIONS)

    @classmethod
    def from_bytes(cls, raw: bytes) -> EntityState:
        data = orjson.loads(raw)
        if _BIG_INT.encode() in raw:
            data = _untag_big_ints(data)
        tiles = {f: {int(k): v for k, v in t.items()} for f, t in data["tiles"].items()}
        return cls(u=data["u"], rev=data["rev"], tiles=tiles, rows=data["rows"])


def _tag_big_ints(value: Any) -> Any:
    if type(value) is int and not -_INT64 <= value < _INT64:
        return {_BIG_INT: str(value)}
    if isinstance(value, dict):
        return {k: _tag_big_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tag_big_ints(v) for v in value]
    return value


def _untag_big_ints(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and _BIG_INT in value:
            return int(value[_BIG_INT])
        return {k: _untag_big_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag_big_ints(v) for v in value]
    return value


@dataclass
class GroupState:
    """The entities of a group (or of one shard of it), their open history hours, and source progress.

    `progress[p]` is the greatest event time among the valid events of the group's type read from
    source partition `p`. Every event accepted later from `p` has an event time of at least
    `progress[p]` minus the allowed lateness (lateness is decided per partition), so once every
    partition has been seen, nothing older than `min(progress) - lateness` can still be accepted:
    that is the history watermark (`horizon`).
    """

    partitions: int
    entities: dict[str, EntityState] = field(default_factory=dict)
    open_hours: dict[int, set[str]] = field(default_factory=dict)  # hour index -> entities with events in it
    progress: dict[int, int] = field(default_factory=dict)

    def advance(self, partition_max: dict[int, int]) -> None:
        """Record the greatest event times seen per source partition."""
        progress = self.progress
        for p, t in partition_max.items():
            if t > progress.get(p, -1):
                progress[p] = t

    def horizon(self, lateness_ms: int) -> int | None:
        """Events older than this can no longer be accepted; None until every partition was seen."""
        if len(self.progress) < self.partitions:
            return None
        return min(self.progress.values()) - lateness_ms

    @property
    def furthest(self) -> int:
        """The greatest event time seen on any partition (-1 before the first)."""
        return max(self.progress.values(), default=-1)
