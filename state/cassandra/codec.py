"""The one blob cell that holds a record's payload in Cassandra.

Values, state and expiry are a single cell so Cassandra, which reconciles cells one by one,
can never return a record whose parts come from two writes. Layout (little-endian)::

    offset  size  field
    0       1     format (1)
    1       8     expires_at   int64, UTC ms; int64 max = never
    9       4     n            uint32, length of the values
    13      n     values       JSON object (state.online.codec)
    13+n    rest  state        opaque processor state

The version is not in the cell: it is the row's clustering key.
"""

from __future__ import annotations

import struct

from state.exceptions import CorruptRecordError
from state.online.base import FeatureValue, OnlineRecord, stored_record
from state.online.codec import decode_values, encode_values

__all__ = ["NEVER", "decode_cell", "encode_cell"]

FORMAT = 1
#: expires_at of a record without TTL.
NEVER = 2**63 - 1

_HEADER = struct.Struct("<BqI")


def encode_cell(record: OnlineRecord, expires_at: int) -> bytes:
    """The cell of `record`; the error names the record if a value is not encodable."""
    values = encode_values(record.values, record.group, record.entity)
    return b"".join((_HEADER.pack(FORMAT, expires_at, len(values)), values, record.state))


def decode_cell(
    group: str, entity: str, event_time: int, revision: int, cell: bytes, now_ms: int, where: str
) -> OnlineRecord | None:
    """The record stored as `cell` at version (event_time, revision), or None if expired at `now_ms`."""
    try:
        fmt, expires_at, size = _HEADER.unpack_from(cell)
    except struct.error as exc:
        raise _corrupt(where, group, entity, f"{len(cell)} bytes is shorter than a record header") from exc
    if fmt != FORMAT:
        raise _corrupt(where, group, entity, f"unknown record format {fmt}, expected {FORMAT}")
    if now_ms > expires_at:
        return None
    end = _HEADER.size + size
    if end > len(cell):
        raise _corrupt(where, group, entity, f"values of {size} bytes run past the end ({len(cell)} bytes)")
    values: dict[str, FeatureValue] = decode_values(cell[_HEADER.size : end], group, entity)
    return stored_record(group, entity, event_time, values, cell[end:], revision)


def _corrupt(where: str, group: str, entity: str, what: str) -> CorruptRecordError:
    return CorruptRecordError(f"Cassandra {where} record {group!r}/{entity!r}: {what}")
