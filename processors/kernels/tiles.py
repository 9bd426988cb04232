"""Windowed aggregation over event-time tiles: the one kernel every engine runs.

See `processors/README.md` for the exact semantics. In short: a window `W` is cut into tiles of
`H = hop_for(W)`; the value as of `t` merges the `W/H` tiles ending with the tile of `t`.

`fold_batch` folds a whole batch (columns of entity codes, event times and values) into per-entity
tile maps with numpy group-bys, so the per-event Python work is a few array operations; the
streaming processor feeds it micro-batches and backfill feeds it large chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from processors.kernels.aggregations import Agg, finish, last_wins, merge_partial, micro_units, numeric_value
from processors.kernels.hll import hll_add, hll_hash, hll_merge

__all__ = [
    "Segment",
    "TileMap",
    "WindowSpec",
    "batch_partials",
    "fold_batch",
    "hop_for",
    "merge_segments",
    "value_as_of",
    "window_start",
]

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
_INT64 = 2**63

TileMap = dict[int, Any]  # tile index -> partial


def hop_for(window_ms: int) -> int:
    """The tile size of a window: 1m below 1h, 5m below 1d, else 1h."""
    if window_ms < HOUR:
        return MINUTE
    if window_ms < DAY:
        return 5 * MINUTE
    return HOUR


@dataclass(frozen=True)
class WindowSpec:
    agg: Agg
    window_ms: int
    hop_ms: int

    @classmethod
    def of(cls, agg: Agg, window_ms: int) -> WindowSpec:
        return cls(agg, window_ms, hop_for(window_ms))

    @property
    def tiles(self) -> int:
        return self.window_ms // self.hop_ms


Instant = TypeVar("Instant", int, np.ndarray)


def window_start(spec: WindowSpec, t: Instant) -> Instant:
    """The first event time inside the window as of `t` (inclusive); element-wise for an array of instants."""
    return (t // spec.hop_ms + 1) * spec.hop_ms - spec.window_ms


def value_as_of(spec: WindowSpec, tiles: TileMap, t: int) -> Any:
    """The feature value as of `t`, from tiles holding only events ≤ `t` in the tile of `t`."""
    last = t // spec.hop_ms
    first = last - spec.tiles + 1
    if len(tiles) > spec.tiles:  # more tiles kept than the window holds: look up the window's only
        inside = [p for p in map(tiles.get, range(first, last + 1)) if p is not None]
    else:
        inside = [p for k, p in tiles.items() if first <= k <= last]
    if not inside:
        return finish(spec.agg, None)
    agg = spec.agg
    # Direct reductions for the common aggregations (one pass, no per-tile dispatch); the general
    # merge for the rest. Both are exact and order-free, so tile order does not matter.
    if agg is Agg.count or agg is Agg.sum:
        return finish(agg, sum(inside))
    if agg is Agg.mean:
        return finish(agg, [sum(p[0] for p in inside), sum(p[1] for p in inside)])
    if agg is Agg.min:
        return finish(agg, min(inside))
    if agg is Agg.max:
        return finish(agg, max(inside))
    if agg is Agg.approx_distinct:  # the union of the sketches, built in one dict (no copy per tile)
        registers: dict[int, int] = dict(inside[0])
        for partial in inside[1:]:
            hll_merge(registers, partial)
        return finish(agg, registers)
    merged: Any = None
    for partial in inside:
        merged = merge_partial(agg, merged, partial)  # never mutates its arguments
    return finish(agg, merged)


#: One new partial of a batch: (entity code, tile index, partial).
Segment = tuple[int, int, Any]


def fold_batch(
    spec: WindowSpec,
    states: Sequence[TileMap],
    codes: np.ndarray,
    times: np.ndarray,
    values: Sequence[Any] | np.ndarray | None,
) -> None:
    """Fold events into tile maps: event `i` goes to `states[codes[i]]`, tile `times[i] // hop`.

    `values` holds the aggregated value of each event (None = null, skipped); it is ignored for
    `count` without an expression (pass None). Events are merged in the order given, which only
    matters for ties of `last`. Equivalent to `merge_segments(spec, states, batch_partials(...))`.
    """
    merge_segments(spec, states, batch_partials(spec, codes, times, values))


def merge_segments(spec: WindowSpec, states: Sequence[TileMap], segments: Sequence[Segment]) -> None:
    """Merge the partials of `batch_partials` into the tile maps (mutates `states`)."""
    agg = spec.agg
    for code, tile, partial in segments:
        tmap = states[code]
        tmap[tile] = merge_partial(agg, tmap.get(tile), partial)


def batch_partials(
    spec: WindowSpec, codes: np.ndarray, times: np.ndarray, values: Sequence[Any] | np.ndarray | None
) -> list[Segment]:
    """The partial of every (entity, tile) a batch touches, without touching any state.

    Numeric aggregations skip values that `numeric_value` turns into null (see its rule).
    """
    n = len(codes)
    if n == 0:
        return []
    agg = spec.agg
    tiles = times // spec.hop_ms
    if values is None:
        keep = np.ones(n, dtype=bool)
    elif agg.numeric:
        values = [numeric_value(v) for v in values]
        keep = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    else:
        keep = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return []
    order = idx[np.lexsort((idx, times[idx], tiles[idx], codes[idx]))]
    c, k = codes[order], tiles[order]
    boundary = np.empty(order.size, dtype=bool)
    boundary[0] = True
    np.not_equal(c[1:], c[:-1], out=boundary[1:])
    boundary[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], order.size)
    seg_codes, seg_tiles = c[starts].tolist(), k[starts].tolist()

    if agg is Agg.count:
        partials: list[Any] = (ends - starts).tolist()
    elif agg in (Agg.sum, Agg.mean, Agg.min, Agg.max):
        vals = np.asarray([values[i] for i in order.tolist()], dtype=np.float64)  # type: ignore[index]
        if agg in (Agg.sum, Agg.mean):
            micro = micro_units(vals)
            if micro.dtype == object or int(np.abs(micro).max()) * int(micro.size) >= _INT64:
                # Python ints: exact however large (int64 segment sums could wrap around silently).
                exact = micro.tolist()
                sums = [sum(exact[s:e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
            else:
                sums = np.add.reduceat(micro, starts).tolist()
            partials = sums if agg is Agg.sum else [[s, m] for s, m in zip(sums, (ends - starts).tolist(), strict=True)]
        elif agg is Agg.min:
            partials = np.minimum.reduceat(vals, starts).tolist()
        else:
            partials = np.maximum.reduceat(vals, starts).tolist()
    elif agg is Agg.last:
        partials = []
        ordered = order.tolist()
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            best: list[Any] | None = None
            for i in ordered[s:e]:
                pair = [int(times[i]), values[i]]  # type: ignore[index]
                best = pair if best is None else last_wins(best, pair)
            partials.append(best)
    else:  # approx_distinct
        partials = []
        ordered = order.tolist()
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            registers: dict[int, int] = {}
            for i in ordered[s:e]:
                hll_add(registers, hll_hash(values[i]))  # type: ignore[index]
            partials.append(registers)
    return list(zip(seg_codes, seg_tiles, partials, strict=True))
