"""Bulk work's resources: pausing CPython's cyclic GC around it, and its peak memory."""

from __future__ import annotations

import gc
import resource
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused", "peak_rss_mb"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Turn CPython's automatic cyclic GC off for bulk work, restoring the previous setting after.

    A backfill chunk or a training-set join allocates millions of small objects (messages, decoded
    events, rows, columns, tile state). With the default thresholds the collector runs every ~700
    allocations, and its full collections rescan everything alive: about 40% of a backfill's CPU.
    The bulk loops make no reference cycles (`test_a_backfill_leaves_no_cyclic_garbage` checks a
    backfill), so memory is freed by reference counting alone.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MB of this process (or, with `resource.RUSAGE_CHILDREN`, of its
    largest finished child, e.g. a training-set worker)."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)
