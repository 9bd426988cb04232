"""The offline store: Hive-partitioned Parquet mirrors of feature groups and of raw events (pyarrow only).

See `layout.py` for the folder layout; readers deduplicate, because output is at-least-once.
"""

from state.offline.files import remove_stale_temporaries
from state.offline.mirror import MIRROR_COLUMNS, MIRROR_KEY, ParquetMirror, read_mirror
from state.offline.raw import RAW_KEY, RAW_SCHEMA, RawArchive, archived_hours, read_raw

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
