"""Property tests: the batch as-of kernel equals the definition (tests/reference.py) at every instant,
for every aggregation, exactly — the same reference the tile kernel is held to."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.kernels import Agg, WindowSpec
from processors.kernels.asof import AsOf, Timeline
from processors.kernels.hll import hll_estimate, sketch
from tests.reference import latest
from tests.unit.test_kernels import ENTITIES, MIN, brute_force, streams

T0 = 1_767_225_600_000


def as_of_all(spec: WindowSpec, events: list[tuple[int, int, Any]], codes: list[int], times: list[int]) -> list[Any]:
    line = Timeline.of(np.array([e for e, _, _ in events], dtype=np.int64), np.array([t for _, t, _ in events]))
    values = None if spec.agg is Agg.count and all(v is not None for *_, v in events) else [v for *_, v in events]
    return AsOf(line, np.array(codes), np.array(times)).window(spec, values).to_list()


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(-2, 40), min_size=1, max_size=12))
def test_window_values_equal_brute_force(
    case: tuple[WindowSpec, list[tuple[int, int, Any]], list[int], int], steps: list[int]
) -> None:
    spec, events, _, t = case
    # Several instants around t, for every entity plus an unknown one (code -1: an empty window).
    times = [t + s * spec.hop_ms // 3 for s in steps]
    codes = [c for c in [*range(len(ENTITIES)), -1] for _ in times]
    got = as_of_all(spec, events, codes, times * (len(ENTITIES) + 1))
    want = [brute_force(spec.agg, spec, events, c, q) for c, q in zip(codes, times * (len(ENTITIES) + 1), strict=True)]
    assert got == want  # exact, floats included


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.integers(T0, T0 + 20), st.one_of(st.none(), st.sampled_from(["a", "b", 1, 2.5]))
        ),
        max_size=40,
    ),
    st.lists(st.tuples(st.integers(-1, 2), st.integers(T0 - 2, T0 + 22)), min_size=1, max_size=10),
)
def test_latest_values_break_ties_like_last_wins(
    events: list[tuple[int, int, Any]], queries: list[tuple[int, int]]
) -> None:
    line = Timeline.of(np.array([e for e, _, _ in events], dtype=np.int64), np.array([t for _, t, _ in events]))
    queries_at = AsOf(line, np.array([c for c, _ in queries]), np.array([t for _, t in queries]))
    column = queries_at.latest([v for *_, v in events])
    for (code, t), value, found in zip(queries, column.to_list(), column.valid.tolist(), strict=True):
        mine = [(time, v) for e, time, v in events if e == code and time <= t]
        assert found == bool(mine)
        assert value == (latest(mine) if mine else None)


def test_large_windows_fall_back_to_the_sketch() -> None:
    # 5,000 distinct values in one window: past linear counting, the estimate needs the registers' ranks.
    spec = WindowSpec.of(Agg.approx_distinct, 60 * MIN)
    n = 5000
    events = [(0, T0 + i, f"r-{i}") for i in range(n)]
    got = as_of_all(spec, events, [0, 0, 0], [T0 + 10, T0 + n // 2, T0 + n])
    assert got == [hll_estimate(sketch(f"r-{i}" for i in range(k))) for k in (11, n // 2 + 1, n)]
