"""The offline store: Hive-partitioned Parquet mirrors of feature groups and of raw events (pyarrow only).

See `layout.py` for the folder layout; readers deduplicate, because output is at-least-once.
Names are imported on first use, so `state.offline.temporaries` (start-up) costs no pyarrow import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from state.offline.mirror import MIRROR_COLUMNS, MIRROR_KEY, ParquetMirror, read_mirror
    from state.offline.raw import RAW_KEY, RAW_SCHEMA, RawArchive, archived_hours, read_raw
    from state.offline.temporaries import remove_stale_temporaries

__all__ = [
    "MIRROR_COLUMNS",
    "MIRROR_KEY",
    "RAW_KEY",
    "RAW_SCHEMA",
    "ParquetMirror",
    "RawArchive",
    "archived_hours",
    "read_mirror",
    "read_raw",
    "remove_stale_temporaries",
]

_HOMES = {
    "MIRROR_COLUMNS": "mirror", "MIRROR_KEY": "mirror", "ParquetMirror": "mirror", "read_mirror": "mirror",
    "RAW_KEY": "raw", "RAW_SCHEMA": "raw", "RawArchive": "raw", "archived_hours": "raw", "read_raw": "raw",
    "remove_stale_temporaries": "temporaries",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'state.offline' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f"state.offline.{home}"), name)
