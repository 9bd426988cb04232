"""Property tests: the tile kernel equals a brute-force window computation, for any arrival order,
any batch split and any query time (processors/README.md defines the semantics tested here)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.kernels import Agg, TileMap, WindowSpec, fold_batch, hop_for, value_as_of, window_start
from tests.reference import aggregate

MIN = 60_000
WINDOWS = [10 * MIN, 60 * MIN, 24 * 60 * MIN, 7 * 24 * 60 * MIN]
ENTITIES = ["a", "b", "c"]


def brute_force(agg: Agg, spec: WindowSpec, events: list[tuple[int, int, Any]], entity: int, t: int) -> Any:
    """Straight from the definition (tests/reference.py), on one entity's (time, value) pairs."""
    return aggregate(agg, spec, [(time, v) for (e, time, v) in events if e == entity], t)


@st.composite
def streams(draw: st.DrawFn) -> tuple[WindowSpec, list[tuple[int, int, Any]], list[int], int]:
    agg = draw(st.sampled_from(list(Agg)))
    window = draw(st.sampled_from(WINDOWS))
    spec = WindowSpec.of(agg, window)
    span = 3 * window
    base = 1_767_225_600_000
    if agg is Agg.approx_distinct or agg is Agg.last:
        value = st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w", 1, 2]))
    else:
        value = st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False))
    events = draw(
        st.lists(
            st.tuples(st.integers(0, len(ENTITIES) - 1), st.integers(base, base + span), value),
            min_size=0,
            max_size=120,
        )
    )
    # Random batch boundaries (the kernel must not care how a stream is cut).
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=6)))
    t = draw(st.integers(base - window, base + span + window))
    return spec, events, cuts, t


def fold(spec: WindowSpec, events: list[tuple[int, int, Any]], cuts: list[int]) -> list[TileMap]:
    states: list[TileMap] = [{} for _ in ENTITIES]
    bounds = [0, *cuts, len(events)]
    for lo, hi in itertools.pairwise(bounds):
        chunk = events[lo:hi]
        codes = np.array([e for e, _, _ in chunk], dtype=np.int64)
        times = np.array([t for _, t, _ in chunk], dtype=np.int64)
        values = None if spec.agg is Agg.count and all(v is not None for *_, v in chunk) else [v for *_, v in chunk]
        fold_batch(spec, states, codes, times, values)
    return states


@settings(max_examples=300, deadline=None)
@given(streams())
def test_tiles_equal_brute_force_as_of_any_time(
    case: tuple[WindowSpec, list[tuple[int, int, Any]], list[int], int],
) -> None:
    spec, events, cuts, t = case
    # Online, the tiles hold what has arrived; the value as of t is read once every event <= t is in.
    visible = [ev for ev in events if ev[1] <= t]
    states = fold(spec, visible, [c for c in cuts if c <= len(visible)])
    for code in range(len(ENTITIES)):
        # Exact equality, floats included: sums are integers of micro-units, so they do not depend on
        # how the stream was batched.
        assert value_as_of(spec, states[code], t) == brute_force(spec.agg, spec, visible, code, t)


@settings(max_examples=100, deadline=None)
@given(streams(), st.randoms(use_true_random=False))
def test_order_and_batching_do_not_matter(
    case: tuple[WindowSpec, list[tuple[int, int, Any]], list[int], int], rnd: Any
) -> None:
    spec, events, cuts, t = case
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a = fold(spec, events, cuts)
    b = fold(spec, shuffled, [])
    for code in range(len(ENTITIES)):
        assert value_as_of(spec, a[code], t) == value_as_of(spec, b[code], t)


def test_window_boundaries_are_exact() -> None:
    spec = WindowSpec.of(Agg.count, 10 * MIN)  # hop 1m
    assert spec.hop_ms == MIN and spec.tiles == 10
    t = 1_767_225_600_000 + 30 * MIN + 15_000  # 00:30:15
    start = window_start(spec, t)
    assert start == 1_767_225_600_000 + 21 * MIN  # 00:21:00, inclusive
    states: list[TileMap] = [{}]
    times = np.array([start - 1, start, t], dtype=np.int64)
    fold_batch(spec, states, np.zeros(3, dtype=np.int64), times, None)
    assert value_as_of(spec, states[0], t) == 2  # start-1 is out, start and t are in
    assert value_as_of(spec, states[0], start + 10 * MIN) == 1  # a window later only t remains


def test_hops() -> None:
    assert [hop_for(w) for w in WINDOWS] == [MIN, 5 * MIN, 60 * MIN, 60 * MIN]


def test_approx_distinct_is_close_on_large_sets() -> None:
    spec = WindowSpec.of(Agg.approx_distinct, 24 * 60 * MIN)
    n = 20_000
    states: list[TileMap] = [{}]
    times = np.full(n, 1_767_225_600_000, dtype=np.int64)
    fold_batch(spec, states, np.zeros(n, dtype=np.int64), times, [f"r-{i}" for i in range(n)])
    assert value_as_of(spec, states[0], 1_767_225_600_000) == pytest.approx(n, rel=0.08)
