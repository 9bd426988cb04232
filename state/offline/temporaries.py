"""Deleting the temporary Parquet files a killed writer left (no pyarrow: processors call it at start-up)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["remove_stale_temporaries"]


def remove_stale_temporaries(root: Path) -> int:
    """Delete the temporary files under `root` whose writer is gone (killed mid-write); returns how many.

    A writer's process id is in the name, so files of a writer still running (another processor,
    a backfill) are kept.
    """
    removed = 0
    for path in Path(root).glob("**/.part-*.parquet.tmp"):
        pid = path.name.removesuffix(".parquet.tmp").rpartition(".")[2]
        if pid.isdigit() and _alive(int(pid)):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
