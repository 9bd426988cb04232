"""Bulk work's resources: pausing CPython's cyclic GC around it, and its peak memory."""

from __future__ import annotations

import resource

from processors.resources import gc_paused

__all__ = ["gc_paused", "peak_rss_mb"]


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MB of this process (or, with `resource.RUSAGE_CHILDREN`, of its
    largest finished child, e.g. a training-set worker)."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)
