"""Byte layout of the RocksDB store: keys, records and checkpoints.

Key of a record: ``group \\x00 entity`` (UTF-8). A group never contains NUL, so the first NUL
splits the key, and all records of a group are one contiguous key range. Checkpoints live under
``\\x00checkpoint\\x00 name``: a leading NUL, which no record key has.

Value of a record (little-endian)::

    offset  size  field
    0       1     format (1)
    1       8     event_time   int64, UTC ms
    9       2     revision     uint16
    11      8     expires_at   int64, UTC ms; int64 max = never
    19      4     n            uint32, length of the values
    23      n     values       JSON object (state.online.codec)
    23+n    rest  state        opaque processor state

The version `(event_time, revision)` sits at a fixed offset, so an upsert compares versions
without decoding values.
"""

from __future__ import annotations

import struct

from state.exceptions import CorruptRecordError
from state.online.base import OnlineRecord, stored_record
from state.online.codec import decode_values, encode_values

__all__ = [
    "CHECKPOINT_PREFIX",
    "NEVER",
    "RECORDS_START",
    "checkpoint_key",
    "decode_expires_at",
    "decode_record",
    "decode_version",
    "encode_record",
    "group_range",
    "record_key",
]

FORMAT = 1
#: expires_at of a record without TTL.
NEVER = 2**63 - 1
#: Checkpoint keys start with NUL; every record key sorts at or after RECORDS_START.
CHECKPOINT_PREFIX = b"\x00checkpoint\x00"
RECORDS_START = b"\x01"

_HEADER = struct.Struct("<BqHqI")
_VERSION = struct.Struct("<BqH")
_EXPIRES_AT = struct.Struct("<q")
_EXPIRES_AT_OFFSET = 11


def record_key(group: str, entity: str) -> bytes:
    """``group \\x00 entity`` as UTF-8."""
    return f"{group}\x00{entity}".encode()


def group_range(group: str) -> tuple[bytes, bytes]:
    """[start, end) of the keys of every record of `group`."""
    prefix = group.encode()
    return prefix + b"\x00", prefix + b"\x01"


def checkpoint_key(name: str) -> bytes:
    return CHECKPOINT_PREFIX + name.encode()


def encode_record(record: OnlineRecord, expires_at: int) -> bytes:
    values = encode_values(record.values, record.group, record.entity)
    header = _HEADER.pack(FORMAT, record.event_time, record.revision, expires_at, len(values))
    return b"".join((header, values, record.state))


def decode_version(data: bytes, key: bytes) -> tuple[int, int]:
    """(event_time, revision) of a stored record."""
    try:
        fmt, event_time, revision = _VERSION.unpack_from(data)
    except struct.error as exc:
        raise _corrupt(key, f"{len(data)} bytes is shorter than a record header") from exc
    if fmt != FORMAT:
        raise _corrupt(key, f"unknown record format {fmt}, expected {FORMAT}")
    return event_time, revision


def decode_expires_at(data: bytes, key: bytes) -> int:
    try:
        return int(_EXPIRES_AT.unpack_from(data, _EXPIRES_AT_OFFSET)[0])
    except struct.error as exc:
        raise _corrupt(key, f"{len(data)} bytes is shorter than a record header") from exc


def decode_record(group: str, entity: str, data: bytes, now_ms: int) -> OnlineRecord | None:
    """The record stored as `data`, or None if it expired before `now_ms`."""
    try:
        fmt, event_time, revision, expires_at, size = _HEADER.unpack_from(data)
    except struct.error as exc:
        raise _corrupt(record_key(group, entity), f"{len(data)} bytes is shorter than a record header") from exc
    if fmt != FORMAT:
        raise _corrupt(record_key(group, entity), f"unknown record format {fmt}, expected {FORMAT}")
    if now_ms > expires_at:
        return None
    end = _HEADER.size + size
    if end > len(data):
        raise _corrupt(record_key(group, entity), f"values of {size} bytes run past the end ({len(data)} bytes)")
    values = decode_values(data[_HEADER.size : end], group, entity)
    return stored_record(group, entity, event_time, values, data[end:], revision)


def _corrupt(key: bytes, what: str) -> CorruptRecordError:
    return CorruptRecordError(f"RocksDB key {key!r}: {what}")
