"""Partial aggregates per tile: how to fold values in, merge two partials, and finish a value.

A partial is a small JSON-friendly value (so window state can be stored as bytes anywhere):

| agg             | partial                 | empty window |
|-----------------|-------------------------|--------------|
| count           | int                     | 0            |
| sum             | float                   | 0.0          |
| mean            | [sum, count]            | null         |
| min / max       | float                   | null         |
| last            | [event_time, value]     | null         |
| approx_distinct | {register: rank} (HLL)  | 0            |

Null values are skipped by every aggregation (`count` with an expression counts non-null values;
`count` without one counts events).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from processors.kernels.hll import hll_estimate, hll_merge

__all__ = ["Agg", "finish", "merge_partial"]


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
            # Ties on event time: the later-processed one (b) wins.
            return a if a[0] > b[0] else b
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
            return 0.0 if partial is None else float(partial)
        case Agg.mean:
            return None if partial is None or partial[1] == 0 else partial[0] / partial[1]
        case Agg.min | Agg.max:
            return None if partial is None else float(partial)
        case Agg.last:
            return None if partial is None else partial[1]
        case Agg.approx_distinct:
            return 0 if partial is None else hll_estimate(partial)
    msg = f"unknown aggregation {agg!r}"
    raise ValueError(msg)
