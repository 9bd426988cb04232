"""Where the offline mirror puts things: Hive-style partitions by the UTC hour of `event_time`.

    <root>/<dataset>/v<version>/dt=YYYY-MM-DD/hour=HH/part-<uuid>.parquet     feature groups
    <root>/raw/<topic>/dt=YYYY-MM-DD/hour=HH/part-<uuid>.parquet              raw source events

A row with event_time `t` (UTC ms) lives in hour `t // 3_600_000`. DuckDB, Spark and Hive read
the tree as it is (`read_parquet('<root>/<ds>/v1/*/*/*.parquet', hive_partitioning=true)`).
DuckDB types `dt` as DATE, but keeps `hour` VARCHAR once a zero-padded value ('00'-'09') is among
the files; add `hive_types={'hour': INTEGER}` for an integer hour. pyarrow (and `read_mirror`)
read it as int32.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from state.exceptions import MirrorError

__all__ = [
    "HOUR_MS",
    "PARTITIONING",
    "PARTITION_COLUMNS",
    "RAW_DIR",
    "check_name",
    "hour_partition",
    "mirror_path",
    "partition_files",
    "partition_filter",
    "raw_path",
]

HOUR_MS = 3_600_000
#: The raw archive's top folder; no feature dataset may take this name.
RAW_DIR = "raw"
PARTITION_COLUMNS = ("dt", "hour")
#: How readers parse the partition folders: `dt` a string (YYYY-MM-DD), `hour` an int.
PARTITIONING = ds.partitioning(pa.schema([("dt", pa.string()), ("hour", pa.int32())]), flavor="hive")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,248}$")


def check_name(kind: str, name: object) -> str:
    """`name` if it is a safe folder name (letters, digits, `_`, `.`, `-`; like a Kafka topic)."""
    if not isinstance(name, str) or not _NAME.match(name):
        msg = f"{kind} must be 1-249 letters, digits, '_', '.' or '-', not starting with '.' or '-'; got {name!r}"
        raise MirrorError(msg)
    return name


def mirror_path(root: Path, dataset: str, version: int | None) -> Path:
    """`<root>/<dataset>/v<version>`, or `<root>/<dataset>` without a version."""
    check_name("dataset", dataset)
    if dataset == RAW_DIR:
        msg = f"dataset name {RAW_DIR!r} is reserved for the raw event archive (use RawArchive)"
        raise MirrorError(msg)
    if version is None:
        return Path(root) / dataset
    if type(version) is not int or version < 1:
        msg = f"dataset {dataset!r}: version must be an int ≥ 1 or None, got {version!r}"
        raise MirrorError(msg)
    return Path(root) / dataset / f"v{version}"


def raw_path(root: Path, topic: str) -> Path:
    """`<root>/raw/<topic>`."""
    return Path(root) / RAW_DIR / check_name("topic", topic)


def hour_partition(hour: int) -> str:
    """The partition folder of an hour index: `dt=YYYY-MM-DD/hour=HH`."""
    start = datetime.fromtimestamp(hour * 3600, tz=UTC)
    return f"dt={start:%Y-%m-%d}/hour={start:%H}"


def partition_files(base: Path) -> dict[int, list[Path]]:
    """The Parquet files under `base`, by the hour index of their partition folder (a directory listing).

    Hidden temporary files (`.part-….parquet.tmp`, being written) are not listed.
    """
    found: dict[int, list[Path]] = {}
    for folder in base.glob("dt=*/hour=*"):
        day = datetime.strptime(folder.parent.name.removeprefix("dt="), "%Y-%m-%d").replace(tzinfo=UTC)
        hour = int(day.timestamp()) // 3600 + int(folder.name.removeprefix("hour="))
        files = sorted(folder.glob("part-*.parquet"))
        if files:
            found[hour] = files
    return dict(sorted(found.items()))


def partition_filter(start_ms: int | None, end_ms: int | None) -> ds.Expression | None:
    """Rows with `start_ms ≤ event_time < end_ms`, with the dt/hour terms that prune partitions."""
    terms: list[ds.Expression] = []
    dt, hour = pc.field("dt"), pc.field("hour")
    if start_ms is not None:
        first = datetime.fromtimestamp(start_ms // HOUR_MS * 3600, tz=UTC)
        first_dt = f"{first:%Y-%m-%d}"
        terms.append((dt > first_dt) | ((dt == first_dt) & (hour >= first.hour)))
        terms.append(pc.field("event_time") >= start_ms)
    if end_ms is not None:
        last = datetime.fromtimestamp((end_ms - 1) // HOUR_MS * 3600, tz=UTC)
        last_dt = f"{last:%Y-%m-%d}"
        terms.append((dt < last_dt) | ((dt == last_dt) & (hour <= last.hour)))
        terms.append(pc.field("event_time") < end_ms)
    if not terms:
        return None
    expression = terms[0]
    for term in terms[1:]:
        expression = expression & term
    return expression
