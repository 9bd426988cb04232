"""`RawArchive`: raw source events kept as Parquet, so a replay can reach past Kafka retention.

    <root>/raw/<topic>/dt=YYYY-MM-DD/hour=HH/part-<uuid>.parquet

>>> archive = RawArchive(Path("/data/offline"))                                       # doctest: +SKIP
>>> archive.write([{"topic": "rides.trips", "kafka_partition": 0, "kafka_offset": 7, "key": b"zone-7",
...                 "value": b'{"event_time": …}', "event_time": 1_700_000_000_000,
...                 "event_type": "trip_requested"}])                                 # doctest: +SKIP
>>> read_raw(Path("/data/offline"), "rides.trips", start_ms=1_699_999_000_000)        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from state.exceptions import MirrorError
from state.offline.files import read_partitioned, write_partitioned
from state.offline.layout import HOUR_MS, check_name, partition_files, raw_path
from state.offline.tables import Rows, to_table

__all__ = ["RAW_KEY", "RAW_SCHEMA", "RawArchive", "archived_hours", "read_raw"]

#: The columns of an archived event, exactly.
RAW_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("event_time", pa.int64()),
        ("event_type", pa.string()),
        ("valid", pa.bool_()),
    ]
)
#: The columns an archived event must have a value in (Kafka keys, values and headers may be null).
_NOT_NULL = pa.schema([RAW_SCHEMA.field(name) for name in ("topic", "kafka_partition", "kafka_offset", "event_time")])
#: What makes an archived event unique.
RAW_KEY = ("topic", "kafka_partition", "kafka_offset")
#: Kafka's order: a replay must see each partition's events in offset order.
_ORDER = ("kafka_partition", "kafka_offset")


class RawArchive:
    """Writes raw source events of any topics under `<root>/raw/<topic>/`, partitioned by event hour."""

    def __init__(self, root: Path, *, compression: str = "zstd", durable: bool = True) -> None:
        self.root = Path(root)
        self.compression = compression
        self.durable = durable

    def write(self, rows: Rows) -> list[Path]:
        """Write events (dicts or a table with `RAW_SCHEMA`'s columns); returns the new files.

        `key`, `value`, `event_type` and `valid` may be null; the others may not. `valid`: whether
        the record decoded as a valid event of `event_type` (null: not decoded); `event_time` is
        the event's when valid, else the record timestamp.
        """
        if len(rows) == 0:
            return []
        table = to_table(rows, _NOT_NULL, RAW_SCHEMA, f"raw archive {self.root}")
        written: list[Path] = []
        for topic in pc.unique(table["topic"]).to_pylist():
            check_name("topic", topic)
            events = table.filter(pc.equal(table["topic"], topic))
            written += write_partitioned(
                raw_path(self.root, topic), events, compression=self.compression, durable=self.durable
            )
        return written

    def read(
        self,
        topic: str,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """See `read_raw`."""
        return read_raw(self.root, topic, start_ms=start_ms, end_ms=end_ms, columns=columns)


def read_raw(
    root: Path,
    topic: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    columns: Sequence[str] | None = None,
    hours: Sequence[int] | None = None,
    event_type: str | None = None,
) -> pa.Table:
    """Archived events of `topic` with `start_ms ≤ event_time < end_ms`, each once, in Kafka order.

    Repeats (same topic, partition and offset) are dropped; rows come sorted by
    (kafka_partition, kafka_offset). `hours` (hour indices, see `archived_hours`) reads only
    those hours' files; `event_type` only events routed to that type (the stream processor archives
    each record with the type routing gave it, null when it could not route it). Raises
    `MirrorError` if the topic was never archived.
    """
    base = raw_path(Path(root), topic)
    files = None
    if hours is not None:
        by_hour = partition_files(base)
        files = [f for hour in hours for f in by_hour.get(hour, [])]
    where = None
    if event_type is not None:
        where = pc.field("event_type") == event_type
    return read_partitioned(
        base, start_ms=start_ms, end_ms=end_ms, columns=columns, unique_by=RAW_KEY, order_by=_ORDER, files=files,
        where=where,
    )  # fmt: skip


def archived_hours(root: Path, topic: str, start_ms: int, end_ms: int) -> dict[int, int]:
    """The hours (index `event_time // 3_600_000`) of `[start_ms, end_ms)` that hold archived events of
    `topic`, with their record counts (from the files' footers, repeats included); {} if none."""
    base = raw_path(Path(root), topic)
    if not base.is_dir():
        msg = f"no offline data at {base} (nothing was ever written there)"
        raise MirrorError(msg)
    first, last = start_ms // HOUR_MS, (end_ms - 1) // HOUR_MS
    return {
        hour: sum(pq.read_metadata(f).num_rows for f in files)
        for hour, files in partition_files(base).items()
        if first <= hour <= last
    }
