"""Byte layout of the RocksDB store: keys, records and checkpoints.

Key of a record: ``group \\x00 entity`` (UTF-8). A group never contains NUL, so the first NUL
splits the key, and all records of a group are one contiguous key range. Checkpoints live under
``\\x00checkpoint\\x00 name``: a leading NUL, which no record key has.

Value of a record (little-endian), format 2::

    offset  size  field
    0       1     format (2)
    1       8     event_time   int64, UTC ms
    9       8     revision     int64
    17      8     expires_at   int64, UTC ms; int64 max = never
    25      4     n            uint32, length of the values
    29      n     values       JSON object (state.online.codec)
    29+n    rest  state        opaque processor state

Format 1, written before revisions outgrew 999, is the same with a uint16 revision (expires_at
at 11, values at 23); it is still read, and replaced by format 2 when its key is next written.
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

FORMAT = 2
#: expires_at of a record without TTL.
NEVER = 2**63 - 1
#: Checkpoint keys start with NUL; every record key sorts at or after RECORDS_START.
CHECKPOINT_PREFIX = b"\x00checkpoint\x00"
RECORDS_START = b"\x01"

# format -> layout of its header, its version, and the offset of expires_at
_HEADERS = {1: struct.Struct("<BqHqI"), FORMAT: struct.Struct("<BqqqI")}
_VERSIONS = {1: struct.Struct("<BqH"), FORMAT: struct.Struct("<Bqq")}
_EXPIRES_AT_OFFSETS = {1: 11, FORMAT: 17}
_HEADER = _HEADERS[FORMAT]
_EXPIRES_AT = struct.Struct("<q")


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
        _, event_time, revision = _VERSIONS[_format(data, key)].unpack_from(data)
    except struct.error as exc:
        raise _corrupt(key, f"{len(data)} bytes is shorter than a record header") from exc
    return event_time, revision


def decode_expires_at(data: bytes, key: bytes) -> int:
    try:
        return int(_EXPIRES_AT.unpack_from(data, _EXPIRES_AT_OFFSETS[_format(data, key)])[0])
    except struct.error as exc:
        raise _corrupt(key, f"{len(data)} bytes is shorter than a record header") from exc


def decode_record(group: str, entity: str, data: bytes, now_ms: int) -> OnlineRecord | None:
    """The record stored as `data`, or None if it expired before `now_ms`."""
    header = _HEADER if data[:1] == _FORMAT_BYTE else _HEADERS[_format(data, record_key(group, entity))]
    try:
        _, event_time, revision, expires_at, size = header.unpack_from(data)
    except struct.error as exc:
        raise _corrupt(record_key(group, entity), f"{len(data)} bytes is shorter than a record header") from exc
    if now_ms > expires_at:
        return None
    end = header.size + size
    if end > len(data):
        raise _corrupt(record_key(group, entity), f"values of {size} bytes run past the end ({len(data)} bytes)")
    values = decode_values(data[header.size : end], group, entity)
    return stored_record(group, entity, event_time, values, data[end:], revision)


_FORMAT_BYTE = bytes([FORMAT])


def _format(data: bytes, key: bytes) -> int:
    """The format byte of a stored record, if it is one this module reads."""
    if not data:
        raise _corrupt(key, "0 bytes is shorter than a record header")
    fmt = data[0]
    if fmt not in _HEADERS:
        raise _corrupt(key, f"unknown record format {fmt}, expected one of {sorted(_HEADERS)}")
    return fmt


def _corrupt(key: bytes, what: str) -> CorruptRecordError:
    return CorruptRecordError(f"RocksDB key {key!r}: {what}")
