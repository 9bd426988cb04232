"""Writing partitioned Parquet files atomically, and reading them back deduplicated."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from state.exceptions import MirrorError
from state.offline.layout import HOUR_MS, PARTITION_COLUMNS, PARTITIONING, hour_partition, partition_filter

__all__ = ["read_partitioned", "write_partitioned"]

logger = logging.getLogger(__name__)


def write_partitioned(base: Path, table: pa.Table, *, compression: str, durable: bool) -> list[Path]:
    """Write `table` under `base`, one new file per (dt, hour) of its `event_time`; returns the files.

    Each file is written under a hidden temporary name (`.part-….<pid>.parquet.tmp`, which readers
    and globs skip) and renamed into place, so a crash never leaves half a file where readers look;
    `state.offline.temporaries` deletes what a killed writer left. With `durable`, the file and its
    folder are fsynced too.
    """
    if table.num_rows == 0:
        return []
    hours = pc.divide(table["event_time"], pa.scalar(HOUR_MS, pa.int64()))
    order = pc.sort_indices(hours)
    table, hours = table.take(order), hours.take(order).combine_chunks()
    runs = pc.run_end_encode(hours)
    written: list[Path] = []
    start = 0
    for end, hour in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
        folder = base / hour_partition(hour)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        temporary = folder / f".{name.removesuffix('.parquet')}.{os.getpid()}.parquet.tmp"
        pq.write_table(table.slice(start, end - start), temporary, compression=compression)
        if durable:
            _fsync(temporary)
        os.replace(temporary, folder / name)
        if durable:
            _fsync(folder)
        written.append(folder / name)
        start = end
    logger.debug("wrote %d rows in %d file(s) under %s", table.num_rows, len(written), base)
    return written


def read_partitioned(
    base: Path,
    *,
    start_ms: int | None,
    end_ms: int | None,
    columns: Sequence[str] | None,
    unique_by: Sequence[str],
    order_by: Sequence[str],
    files: Sequence[Path] | None = None,
    where: ds.Expression | None = None,
) -> pa.Table:
    """Rows under `base` with `start_ms ≤ event_time < end_ms`, one per `unique_by`, sorted by `order_by`.

    Files written at different times may disagree on a column's type (e.g. all-null then double):
    their schemas are unified (nulls and integers promote) before reading. `files` (from
    `partition_files`) reads only those, without listing the whole tree; `where` filters rows
    (before deduplication: it must give repeats of a row the same verdict).
    """
    if not base.is_dir():
        msg = f"no offline data at {base} (nothing was ever written there)"
        raise MirrorError(msg)
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        msg = f"read range: end_ms {end_ms} is before start_ms {start_ms}"
        raise MirrorError(msg)
    if files is not None:
        if not files:
            return _empty(pa.schema([]), columns, unique_by)
        found = [str(f) for f in files]
        dataset = ds.dataset(found, format="parquet", partitioning=PARTITIONING, partition_base_dir=str(base))
    else:
        dataset = ds.dataset(base, format="parquet", partitioning=PARTITIONING)
    expression = partition_filter(start_ms, end_ms)
    fragments = list(dataset.get_fragments(filter=expression))
    if not fragments:
        return _empty(dataset.schema, columns, unique_by)
    try:
        schema = pa.unify_schemas([fragment.physical_schema for fragment in fragments], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        msg = f"files under {base} have incompatible schemas: {exc}"
        raise MirrorError(msg) from exc
    for column in PARTITION_COLUMNS:
        schema = schema.append(PARTITIONING.schema.field(column))
    wanted = _columns(schema, columns, [*unique_by, *order_by], base)
    dataset = ds.FileSystemDataset(fragments, schema, dataset.format, dataset.filesystem)
    table = dataset.to_table(columns=wanted, filter=expression if where is None else expression & where)
    table = table.take(_first_of_each_in_order(table, unique_by, order_by))  # the only take of the wide table
    return table.select(list(columns)) if columns is not None else table


def _first_of_each_in_order(table: pa.Table, unique_by: Sequence[str], order_by: Sequence[str]) -> pa.Array:
    """Row indices: the first row of each `unique_by` key, sorted by `order_by` (computed on the key columns)."""
    keys = table.select(list(dict.fromkeys([*unique_by, *order_by])))
    by_key = pc.sort_indices(keys, sort_keys=[(c, "ascending") for c in unique_by])  # stable: firsts first
    if len(by_key) == 0:
        return by_key
    # Starts of runs of equal keys in key order: the first rows of their keys.
    starts = None
    for column in unique_by:
        values = keys[column].take(by_key)
        differs = pc.fill_null(pc.not_equal(values.slice(1), values.slice(0, len(values) - 1)), True)
        starts = differs if starts is None else pc.or_(starts, differs)
    assert starts is not None  # unique_by is never empty
    firsts = pc.filter(by_key, pa.chunked_array([pa.array([True]), *starts.chunks]))
    ordered = pc.sort_indices(keys.take(firsts), sort_keys=[(c, "ascending") for c in order_by])
    return firsts.take(ordered)


def _columns(schema: pa.Schema, columns: Sequence[str] | None, needed: Sequence[str], base: Path) -> list[str]:
    if columns is None:
        return [name for name in schema.names if name not in PARTITION_COLUMNS]
    unknown = [column for column in columns if column not in schema.names]
    if unknown:
        msg = f"columns {unknown} are not in the files under {base}; they have: {', '.join(schema.names)}"
        raise MirrorError(msg)
    return list(dict.fromkeys([*columns, *needed]))


def _empty(schema: pa.Schema, columns: Sequence[str] | None, unique_by: Sequence[str]) -> pa.Table:
    names = list(columns) if columns is not None else [n for n in schema.names if n not in PARTITION_COLUMNS]
    fields = [schema.field(n) if n in schema.names else pa.field(n, pa.null()) for n in names or unique_by]
    return pa.schema(fields).empty_table()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
