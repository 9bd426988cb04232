"""Bulk work's resources: pausing CPython's cyclic GC around it (the stream processor's state restore,
backfill chunks, training-set joins)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


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
