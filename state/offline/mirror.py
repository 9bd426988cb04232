"""`ParquetMirror`: the offline copy of a feature group's updates, and `read_mirror` to read it back.

>>> mirror = ParquetMirror(Path("/data/offline"), "zone_demand", 1)                   # doctest: +SKIP
>>> mirror.write([{"entity_key": "zone-7", "event_time": 1_700_000_000_000, "revision": 41,
...                "requests_10m": 3, "written_by": "stream"}])                       # doctest: +SKIP
[PosixPath('/data/offline/zone_demand/v1/dt=2023-11-14/hour=22/part-3f2a….parquet')]
>>> read_mirror(Path("/data/offline"), "zone_demand", 1, start_ms=1_699_999_000_000)  # doctest: +SKIP
pyarrow.Table …
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from state.offline.files import read_partitioned, write_partitioned
from state.offline.layout import mirror_path
from state.offline.tables import Rows, to_table

__all__ = ["MIRROR_COLUMNS", "MIRROR_KEY", "ParquetMirror", "read_mirror"]

#: The columns every row of a feature group's history has, with their types; feature values are
#: further columns. A row holds the entity's values as of `event_time`; `revision` counts the
#: entity's accepted events up to then; `written_by` names the job (stream or backfill).
MIRROR_COLUMNS = pa.schema(
    [
        ("entity_key", pa.string()),
        ("event_time", pa.int64()),
        ("revision", pa.int64()),
        ("written_by", pa.string()),
    ]
)
#: What identifies a row's content (its values are the definition's as of `event_time`): output is
#: at-least-once, so readers drop repeats of it.
MIRROR_KEY = ("entity_key", "event_time")
_ORDER = ("event_time", "entity_key")


class ParquetMirror:
    """Writes rows of one dataset (a feature group version) as Hive-partitioned Parquet files.

    Rows are partitioned by the UTC hour of their `event_time`; each call writes one new file
    per hour it touches (never appends), atomically. Declare `schema` (all columns, including
    the required ones) to keep feature column types stable across files, e.g. when a batch has
    only nulls in a column.
    """

    def __init__(
        self,
        root: Path,
        dataset: str,
        version: int | None = None,
        *,
        schema: pa.Schema | None = None,
        compression: str = "zstd",
        durable: bool = True,
    ) -> None:
        self.root = Path(root)
        self.dataset = dataset
        self.version = version
        self.path = mirror_path(self.root, dataset, version)
        self.schema = schema
        self.compression = compression
        self.durable = durable

    def write(self, rows: Rows) -> list[Path]:
        """Write `rows` (dicts or a table with at least `MIRROR_COLUMNS`); returns the new files.

        An empty `rows` writes nothing. Raises `MirrorError` listing every problem with the rows.
        """
        if len(rows) == 0:
            return []
        table = to_table(rows, MIRROR_COLUMNS, self.schema, f"mirror {self.path}")
        return write_partitioned(self.path, table, compression=self.compression, durable=self.durable)

    def read(
        self, *, start_ms: int | None = None, end_ms: int | None = None, columns: Sequence[str] | None = None
    ) -> pa.Table:
        """See `read_mirror`."""
        return read_mirror(self.root, self.dataset, self.version, start_ms=start_ms, end_ms=end_ms, columns=columns)


def read_mirror(
    root: Path,
    dataset: str,
    version: int | None = None,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """The rows of a mirrored dataset with `start_ms ≤ event_time < end_ms`, each once.

    Repeats of a row (same `MIRROR_KEY`, written twice after a crash) are dropped; the first one
    read is kept. Rows come sorted by (event_time, entity_key, kafka_partition, kafka_offset).
    `columns` selects columns (`dt` and `hour`, the partition folders, may be asked for too).
    Raises `MirrorError` if nothing was ever written there.
    """
    return read_partitioned(
        mirror_path(Path(root), dataset, version),
        start_ms=start_ms,
        end_ms=end_ms,
        columns=columns,
        unique_by=MIRROR_KEY,
        order_by=_ORDER,
    )
