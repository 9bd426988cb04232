"""Values as of many instants at once, straight from the events: the batch form of `value_as_of`.

A training set asks for "the value as of t" at millions of (entity, t) pairs. Folding events into
tiles and calling `value_as_of` per pair is a Python loop per pair; here the events are sorted once
by (entity, event time), each pair's window (`window_start(spec, t) ≤ event_time ≤ t`, the
definition of processors/README.md) becomes a range of that order, and the aggregation over every
range is a handful of array operations:

- count, sum, mean: differences of prefix sums, over the same exact micro-units as the tiles;
- min, max: a sparse table of range minima / maxima;
- last and row-level values: the last event of the range, ties ordered by `tie_key` like `last_wins`;
- approx_distinct: the number of distinct HLL registers in the range, which is all `hll_estimate`
  needs below its linear-counting limit; larger windows build their sketch with `hll_add`.

Values are finished like `finish` would finish the merged partial (same arithmetic, same order).
tests/unit/test_asof.py holds this kernel, exactly, to the brute-force reference the tile kernel is
held to (tests/reference.py), for every aggregation, window and instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from processors.kernels.aggregations import SCALE, Agg, micro_units, numeric_value, tie_key
from processors.kernels.hll import (
    HLL_REGISTERS,
    hll_add,
    hll_estimate,
    hll_hashes,
    hll_registers,
    linear_counting_estimates,
)
from processors.kernels.tiles import WindowSpec, window_start

__all__ = ["AsOf", "Column", "Timeline"]

_EXACT_FLOAT = 2**53
_PAIRS_PER_BLOCK = 4_000_000  # bounds the memory of the approx_distinct range expansion
_MIN_ZEROS, _LINEAR_COUNTING = linear_counting_estimates()


@dataclass(frozen=True)
class Column:
    """One value per query: `values[i]`, or null where `valid[i]` is False."""

    values: np.ndarray
    valid: np.ndarray

    def to_list(self) -> list[Any]:
        return [v if ok else None for v, ok in zip(self.values.tolist(), self.valid.tolist(), strict=True)]


@dataclass(frozen=True)
class Timeline:
    """Events of many entities in (entity code, event time) order, for range lookups by (code, time)."""

    order: np.ndarray  # position in this order -> index of the event as given
    codes: np.ndarray
    times: np.ndarray
    _keys: np.ndarray
    _base: int
    _stride: int

    @classmethod
    def of(cls, codes: np.ndarray, times: np.ndarray) -> Timeline:
        """`codes` are non-negative entity codes; ties keep the order given (arrival order)."""
        codes, times = np.asarray(codes, dtype=np.int64), np.asarray(times, dtype=np.int64)
        order = np.lexsort((times, codes))
        base = int(times.min()) - 1 if times.size else 0
        # An event's key is code * stride + (time - base), in 1..stride-2; query keys clip to 0..stride-1.
        stride = (int(times.max()) - base + 2) if times.size else 2
        if times.size and (int(codes.max()) + 1) * stride >= 2**62:
            msg = f"{int(codes.max()) + 1} entities over {stride} ms do not fit one int64 key"
            raise ValueError(msg)
        sorted_codes, sorted_times = codes[order], times[order]
        keys = sorted_codes * stride + (sorted_times - base)
        return cls(order, sorted_codes, sorted_times, keys, base, stride)

    def __len__(self) -> int:
        return int(self.order.size)

    def key(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The sort key of (code, time) pairs in this timeline's order."""
        return codes * self._stride + np.clip(times - self._base, 0, self._stride - 1)

    def upto(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Per query: the position after the entity's last event with event_time ≤ time."""
        return np.searchsorted(self._keys, self.key(codes, times), side="right")

    def since(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Per query: the position of the entity's first event with event_time ≥ time."""
        return np.searchsorted(self._keys, self.key(codes, times), side="left")


class AsOf:
    """Many (entity code, instant) queries against one `Timeline`: each feature's value as of each instant.

    Code -1 is an entity without events (empty windows, no latest value).
    """

    def __init__(self, line: Timeline, codes: np.ndarray, times: np.ndarray) -> None:
        self.line = line
        codes, times = np.asarray(codes, dtype=np.int64), np.asarray(times, dtype=np.int64)
        # Queries are answered in (code, time) order, like the events: every lookup then walks both
        # arrays forward (cache-friendly); `_back` restores the callers' order.
        order = np.argsort(line.key(codes, times), kind="stable")
        self._back = np.empty_like(order)
        self._back[order] = np.arange(order.size)
        self.codes, self.times = codes[order], times[order]
        self.upto = line.upto(self.codes, self.times)  # shared by every feature
        self._since: dict[tuple[int, int], np.ndarray] = {}
        last = np.maximum(self.upto - 1, 0)
        if len(line):
            latest_time, found = line.times[last], (self.upto > 0) & (line.codes[last] == self.codes)
        else:
            latest_time, found = np.zeros(self.codes.size, dtype=np.int64), np.zeros(self.codes.size, dtype=bool)
        self.latest_time, self.found = latest_time[self._back], found[self._back]  # in the callers' order

    def _window_start(self, spec: WindowSpec) -> np.ndarray:
        key = (spec.window_ms, spec.hop_ms)
        if key not in self._since:
            self._since[key] = self.line.since(self.codes, window_start(spec, self.times))  # works on arrays
        return self._since[key]

    def window(self, spec: WindowSpec, values: Sequence[Any] | None) -> Column:
        """The window value per query. `values[j]` is event j's aggregated value (None = null, skipped),
        indexed as the events given to `Timeline.of`; None for `count` without an expression."""
        return self._unsorted(self._window(spec, values))

    def latest(self, values: Sequence[Any]) -> Column:
        """A row-level feature per query: its value on the entity's latest event ≤ t (ties: `tie_key`)."""
        in_order = np.asarray(values, dtype=object)[self.line.order] if len(values) else np.empty(0, dtype=object)
        winners = _tie_ordered(self.line.codes, self.line.times, in_order)
        return Column(_pick(in_order, winners, self.upto - 1)[self._back], self.found)

    def _unsorted(self, column: Column) -> Column:
        return Column(column.values[self._back], column.valid[self._back])

    def _window(self, spec: WindowSpec, values: Sequence[Any] | None) -> Column:
        lo, hi = self._window_start(spec), self.upto
        everywhere = np.ones(lo.size, dtype=bool)
        agg = spec.agg
        if values is None:  # count of events
            return Column(hi - lo, everywhere)
        if agg.numeric:
            values = [numeric_value(v) for v in values]
        # Nulls are skipped by every aggregation: work on the subsequence of non-null values.
        in_order = np.asarray(values, dtype=object)[self.line.order] if len(values) else np.empty(0, dtype=object)
        present = in_order != None  # noqa: E711 (element-wise comparison with None)
        before = np.concatenate(([0], np.cumsum(present)))  # non-null values before each position
        a, b = before[lo], before[hi]  # the window as a range [a, b) of the non-null subsequence
        kept = in_order[present]
        n = b - a
        some = n > 0
        if agg is Agg.count:
            return Column(n, everywhere)
        if agg in (Agg.sum, Agg.mean):
            prefix = _prefix_sums(micro_units(kept.astype(np.float64)))
            sums = _as_float(prefix[b] - prefix[a])
            if agg is Agg.sum:
                return Column(sums, everywhere)
            return Column(np.divide(sums, n, out=np.zeros(n.size), where=some), some)
        if agg in (Agg.min, Agg.max):
            ufunc = np.minimum if agg is Agg.min else np.maximum
            return Column(_range_reduce(kept.astype(np.float64), ufunc, a, b), some)
        if agg is Agg.last:
            winners = _tie_ordered(self.line.codes[present], self.line.times[present], kept)
            return Column(_pick(kept, winners, b - 1), some)
        if agg is Agg.approx_distinct:
            return Column(_distinct_estimates(self.line.codes[present], kept.tolist(), a, b), everywhere)
        msg = f"unknown aggregation {agg!r}"
        raise ValueError(msg)


def _prefix_sums(micro: np.ndarray) -> np.ndarray:
    if micro.dtype != object and float(np.abs(micro).sum(dtype=np.float64)) >= 2**62:
        micro = micro.astype(object)  # int64 prefix sums could overflow: exact Python ints instead
    return np.concatenate((np.zeros(1, dtype=micro.dtype), np.cumsum(micro)))


def _as_float(micro_sums: np.ndarray) -> np.ndarray:
    """micro-units / SCALE, rounded like Python's int / int (exact while below 2**53)."""
    if micro_sums.dtype != object and (micro_sums.size == 0 or int(np.abs(micro_sums).max()) < _EXACT_FLOAT):
        return micro_sums / SCALE
    return np.array([int(s) / SCALE for s in micro_sums.tolist()], dtype=np.float64)


def _range_reduce(values: np.ndarray, ufunc: np.ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ufunc-reduction of values[a:b] per query (nan where empty), with a sparse table."""
    out = np.full(a.size, np.nan)
    lengths = b - a
    if values.size == 0 or not (lengths > 0).any():
        return out
    levels = [values]
    top = int(np.frexp(float(lengths.max()))[1]) - 1  # floor(log2(longest range))
    for k in range(1, top + 1):
        prev, half = levels[-1], 1 << (k - 1)
        levels.append(ufunc(prev[:-half], prev[half:]))  # levels[k][i] = reduce(values[i : i + 2**k])
    k_of = np.frexp(np.maximum(lengths, 1).astype(np.float64))[1] - 1
    for k in np.unique(k_of[lengths > 0]).tolist():
        sel = np.flatnonzero((k_of == k) & (lengths > 0))
        out[sel] = ufunc(levels[k][a[sel]], levels[k][b[sel] - (1 << k)])
    return out


def _tie_ordered(codes: np.ndarray, times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions 0..n-1, where runs of equal (code, time) are reordered so their `tie_key` winner is last."""
    positions = np.arange(len(values))
    if len(values) < 2:
        return positions
    same = (codes[1:] == codes[:-1]) & (times[1:] == times[:-1])
    if not same.any():
        return positions
    # Runs of ties are rare (millisecond event times per entity): sort each one in Python.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], same.astype(np.int8), [0]))))
    for start, end in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
        run = positions[start : end + 1].tolist()
        positions[start : end + 1] = sorted(run, key=lambda i: tie_key(values[i]))
    return positions


def _pick(values: np.ndarray, winners: np.ndarray, last: np.ndarray) -> np.ndarray:
    """values[winners[last[i]]] per query (None where the array is empty; callers mask empty ranges)."""
    if not len(values):
        return np.full(last.size, None, dtype=object)
    return values[winners[np.maximum(last, 0)]]


def _distinct_estimates(codes: np.ndarray, values: list[Any], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`hll_estimate` of the sketch of values[a:b] per query (values of one entity per range)."""
    hashes = hll_hashes(values)
    registers, _ = hll_registers(hashes)
    # previous[i]: the last position before i with the same (entity, register), or -1. A register is
    # new in values[a:b] exactly at the positions i in [a, b) with previous[i] < a.
    slots = codes * (1 << 16) + registers
    by_slot = np.argsort(slots, kind="stable")
    previous = np.full(len(values), -1, dtype=np.int64)
    repeat = slots[by_slot[1:]] == slots[by_slot[:-1]]
    previous[by_slot[1:][repeat]] = by_slot[:-1][repeat]
    lengths = b - a
    ends = np.cumsum(lengths)
    distinct = np.zeros(a.size, dtype=np.int64)
    first = 0
    while first < a.size:  # blocks of queries whose ranges add up to at most _PAIRS_PER_BLOCK positions
        done = int(ends[first - 1]) if first else 0
        last = max(int(np.searchsorted(ends, done + _PAIRS_PER_BLOCK, side="right")), first + 1)
        distinct[first:last] = _new_registers(previous, a[first:last], lengths[first:last])
        first = last
    zeros = HLL_REGISTERS - distinct
    estimates = np.asarray(_LINEAR_COUNTING, dtype=np.int64)[zeros]
    for q in np.flatnonzero(zeros < _MIN_ZEROS).tolist():
        # Past linear counting the estimate needs the registers' ranks: build the sketch itself.
        sketch: dict[int, int] = {}
        for h in hashes[a[q] : b[q]].tolist():
            hll_add(sketch, h)
        estimates[q] = hll_estimate(sketch)
    return estimates


def _new_registers(previous: np.ndarray, a: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per range [a, a + length): how many positions i have previous[i] < a (distinct registers)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(a.size, dtype=np.int64)
    query = np.repeat(np.arange(a.size), lengths)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    positions = np.arange(total) - np.repeat(offsets - a, lengths)
    fresh = previous[positions] < a[query]
    return np.bincount(query, weights=fresh, minlength=a.size).astype(np.int64)
