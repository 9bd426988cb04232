"""Turning rows into a Parquet-ready `pyarrow.Table` with the required columns and types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from state.exceptions import MirrorError
from state.offline.layout import PARTITION_COLUMNS

__all__ = ["Rows", "to_table"]

#: What the writers accept: a list of dict rows, or a table.
Rows: TypeAlias = Sequence[Mapping[str, Any]] | pa.Table


def to_table(rows: Rows, required: pa.Schema, schema: pa.Schema | None, where: str) -> pa.Table:
    """`rows` as a table whose `required` columns have exactly their types and no nulls.

    Other columns keep their types (or those of `schema`, when given). Reports every problem at once.
    """
    if isinstance(rows, pa.Table):
        table = rows
    else:
        rows = list(rows)
        if schema is not None:
            # from_pylist would drop keys the schema lacks without a word.
            extra = set().union(*map(Mapping.keys, rows)).difference(schema.names)
            if extra:
                msg = f"{where}: rows do not fit the declared schema: columns {sorted(extra)} are not in it"
                raise MirrorError(msg)
        try:
            table = pa.Table.from_pylist(rows, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, KeyError) as exc:
            msg = f"{where}: rows do not fit {'the declared schema' if schema else 'one table'}: {exc}"
            raise MirrorError(msg) from exc
    if schema is not None and isinstance(rows, pa.Table):
        table = _conform(table, schema, where)
    problems: list[str] = []
    reserved = [name for name in PARTITION_COLUMNS if name in table.column_names]
    if reserved:
        problems.append(f"columns {reserved} are reserved for the partition folders")
    columns: dict[str, pa.ChunkedArray] = {}
    for field in required:
        if field.name not in table.column_names:
            problems.append(f"column {field.name!r} ({field.type}) is missing")
            continue
        column = table[field.name]
        try:
            column = column.cast(field.type) if column.type != field.type else column
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problems.append(f"column {field.name!r} must be {field.type}, got {column.type} ({exc})")
            continue
        if column.null_count:
            problems.append(f"column {field.name!r} has {column.null_count} null(s)")
        columns[field.name] = column
    if "event_time" in columns and not problems and pc.min(columns["event_time"]).as_py() < 0:
        problems.append("column 'event_time' must be UTC epoch ms ≥ 0")
    if problems:
        msg = f"{where}: " + "; ".join(problems)
        raise MirrorError(msg)
    for name, column in columns.items():
        table = table.set_column(table.column_names.index(name), name, column)
    return table


def _conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """`table` with the columns of `schema` (missing ones all null) cast to their types, in order."""
    problems = [
        f"column {name!r} is not in the declared schema" for name in table.column_names if name not in schema.names
    ]
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for field in schema:
        if field.name not in table.column_names:
            columns[field.name] = pa.nulls(table.num_rows, field.type)
            continue
        try:
            columns[field.name] = table[field.name].cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problems.append(f"column {field.name!r} must be {field.type}, got {table[field.name].type} ({exc})")
    if problems:
        msg = f"{where}: " + "; ".join(problems)
        raise MirrorError(msg)
    return pa.table(columns, schema=schema)
