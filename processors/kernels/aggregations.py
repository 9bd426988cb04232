"""Partial aggregates per tile: how to fold values in, merge two partials, and finish a value.

A partial is a small JSON-friendly value (so window state can be stored as bytes anywhere):

| agg             | partial                 | empty window |
|-----------------|-------------------------|--------------|
| count           | int                     | 0            |
| sum             | int (micro-units)       | 0.0          |
| mean            | [sum (micro-units), n]  | null         |
| min / max       | float                   | null         |
| last            | [event_time, value]     | null         |
| approx_distinct | {register: rank} (HLL)  | 0            |

Null values are skipped by every aggregation (`count` with an expression counts non-null values;
`count` without one counts events). Numeric aggregations (sum, mean, min, max) see every value
through `numeric_value`: a value that is not finite or beyond ±2**53 is null (processors/numeric.py).

Every partial merges exactly and in any order, so a value never depends on how a stream was cut
into batches, on partition interleaving, or on a crash and restart:
- sums are kept as integers of micro-units (each value rounded half-to-even to 1e-6 first), because
  float addition is not associative;
- `last` breaks ties on event time by the value itself (type name, then value), not by arrival.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np

from processors.kernels.hll import hll_estimate, hll_merge
from processors.numeric import bounded_number

__all__ = [
    "SCALE",
    "Agg",
    "finish",
    "last_wins",
    "merge_partial",
    "micro_units",
    "numeric_value",
    "tie_key",
    "to_micro",
]

SCALE = 1_000_000


def to_micro(value: float) -> int:
    """A value in exact integer micro-units (round half to even, like numpy's rint)."""
    return round(value * SCALE)


_EXACT_LIMIT = float(2**53)


def micro_units(values: np.ndarray) -> np.ndarray:
    """`to_micro` of a float64 array: int64 while float64 is exact (< 2**53), else Python ints (object)."""
    micro = np.rint(values * SCALE)
    if micro.size and float(np.abs(micro).max()) >= _EXACT_LIMIT:
        return np.array([to_micro(v) for v in values.tolist()], dtype=object)
    return micro.astype(np.int64)


def numeric_value(value: Any) -> Any:
    """A value as a numeric aggregation sees it: null when not finite or beyond ±2**53 (processors/numeric.py)."""
    return bounded_number(value)


def tie_key(value: Any) -> tuple[str, Any]:
    """The order that breaks ties of `last` on equal event times: type name, then value."""
    return (type(value).__name__, value)


def last_wins(a: list[Any], b: list[Any]) -> list[Any]:
    """Of two [event_time, value] pairs, the later; on equal times the greater value (order-free)."""
    if a[0] != b[0]:
        return a if a[0] > b[0] else b
    return a if tie_key(a[1]) >= tie_key(b[1]) else b


class Agg(StrEnum):
    count = "count"  # type: ignore[assignment]  # shadows str.count, on purpose
    sum = "sum"
    mean = "mean"
    min = "min"
    max = "max"
    last = "last"
    approx_distinct = "approx_distinct"

    @property
    def numeric(self) -> bool:
        """Whether the aggregated values must be numbers."""
        return self in (Agg.sum, Agg.mean, Agg.min, Agg.max)


def merge_partial(agg: Agg, a: Any, b: Any) -> Any:
    """The partial of the union of two event sets. Never mutates `a` or `b` (stored tiles are shared)."""
    if a is None:
        return b
    if b is None:
        return a
    match agg:
        case Agg.count | Agg.sum:
            return a + b
        case Agg.mean:
            return [a[0] + b[0], a[1] + b[1]]
        case Agg.min:
            return a if a <= b else b
        case Agg.max:
            return a if a >= b else b
        case Agg.last:
            return last_wins(a, b)
        case Agg.approx_distinct:
            merged = dict(a)
            hll_merge(merged, b)
            return merged
    msg = f"unknown aggregation {agg!r}"
    raise ValueError(msg)


def finish(agg: Agg, partial: Any) -> Any:
    """The feature value of a window's merged partial."""
    match agg:
        case Agg.count:
            return 0 if partial is None else int(partial)
        case Agg.sum:
            return 0.0 if partial is None else partial / SCALE
        case Agg.mean:
            return None if partial is None or partial[1] == 0 else partial[0] / SCALE / partial[1]
        case Agg.min | Agg.max:
            return None if partial is None else float(partial)
        case Agg.last:
            return None if partial is None else partial[1]
        case Agg.approx_distinct:
            return 0 if partial is None else hll_estimate(partial)
    msg = f"unknown aggregation {agg!r}"
    raise ValueError(msg)
