"""A brute-force reference of the feature semantics in processors/README.md, for tests only.

Deliberately naive: it recomputes every value from the raw event list, with no tiles, no state
and no batching, so the kernels, the engine and the processor can be checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from processors.definitions import FeatureGroup
from processors.kernels import Agg, WindowSpec, window_start
from processors.kernels.aggregations import SCALE, to_micro
from processors.kernels.hll import hll_estimate, sketch

__all__ = ["aggregate", "group_values_as_of", "latest"]


def _latest(pair: tuple[int, Any]) -> tuple[int, str, Any]:
    """Order of "latest": event time, then (on ties) the value's type name and the value."""
    time, value = pair
    return (time, type(value).__name__, 0 if value is None else value)


def latest(pairs: Sequence[tuple[int, Any]]) -> Any:
    """The value of the latest of (event_time, value) pairs (ties: type name, then value)."""
    return max(pairs, key=_latest)[1]


def aggregate(agg: Agg, spec: WindowSpec, events: Sequence[tuple[int, Any]], t: int) -> Any:
    """`events` = (event_time, value) in arrival order; the window value as of `t`."""
    lo = window_start(spec, t)
    inside = [(time, v) for time, v in events if lo <= time <= t]
    vals = [v for _, v in inside if v is not None]
    match agg:
        case Agg.count:
            return len(vals)
        case Agg.sum:
            return sum(to_micro(v) for v in vals) / SCALE
        case Agg.mean:
            return sum(to_micro(v) for v in vals) / SCALE / len(vals) if vals else None
        case Agg.min:
            return float(min(vals)) if vals else None
        case Agg.max:
            return float(max(vals)) if vals else None
        case Agg.last:
            # Latest event time; ties: the greater value (type name, then value).
            pairs = [(time, v) for time, v in inside if v is not None]
            return max(pairs, key=_latest)[1] if pairs else None
        case Agg.approx_distinct:
            return hll_estimate(sketch(vals))
    raise AssertionError(agg)


def group_values_as_of(group: FeatureGroup, events: Sequence[Mapping[str, Any]], t: int) -> dict[str, dict[str, Any]]:
    """Per entity (with an event ≤ t): every feature's value as of `t`, from the raw events."""
    by_entity: dict[str, list[Mapping[str, Any]]] = {}
    for e in events:
        if group.filter is not None and group.filter.evaluate(e) is not True:
            continue
        if e[group.spec.event_time] > t:
            continue
        by_entity.setdefault(str(group.key.evaluate(e)), []).append(e)
    out: dict[str, dict[str, Any]] = {}
    for entity, evs in by_entity.items():
        values: dict[str, Any] = {}
        for f in group.features:
            times = [e[group.spec.event_time] for e in evs]
            if f.window is None:
                assert f.expr is not None
                candidates = [(times[i], f.expr.evaluate(evs[i])) for i in range(len(evs))]
                values[f.name] = max(candidates, key=_latest)[1]
            else:
                vals = [None if f.expr is None else f.expr.evaluate(e) for e in evs]
                pairs = list(zip(times, [1 if f.expr is None else v for v in vals], strict=True))
                values[f.name] = aggregate(f.window.agg, f.window, pairs, t)
        out[entity] = values
    return out
