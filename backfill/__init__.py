"""Backfill by replay: the same definitions and kernels as the stream processor, over history."""

from backfill.run import BackfillJob, BackfillReport, run_backfill

__all__ = ["BackfillJob", "BackfillReport", "run_backfill"]
