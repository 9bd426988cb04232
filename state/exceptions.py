"""Errors of the `state` package, rooted at `StateError`.

StateError
├── BackendMissingError     the driver of a backend is not installed (names the extra to install)
├── InvalidRecordError      a record, key or argument breaks the store's contract (also a ValueError)
├── StoreClosedError        the store was used after `close()`
├── ReadOnlyStoreError      a write on a store opened for reading only
├── StoreUnavailableError   the backend did not accept or answer a request (also a ConnectionError)
├── CorruptRecordError      stored bytes could not be decoded
└── MirrorError             the offline Parquet mirror refused a write or a read (also a ValueError)
"""

from __future__ import annotations

__all__ = [
    "BackendMissingError",
    "CorruptRecordError",
    "InvalidRecordError",
    "MirrorError",
    "ReadOnlyStoreError",
    "StateError",
    "StoreClosedError",
    "StoreUnavailableError",
]


class StateError(Exception):
    """Root of every error raised by `state`."""


class BackendMissingError(StateError, ImportError):
    """The driver a backend needs is not installed; the message names the extra to install."""


class InvalidRecordError(StateError, ValueError):
    """A record, a key or an argument does not satisfy the store's contract."""


class StoreClosedError(StateError):
    """The store was used after `close()`."""


class ReadOnlyStoreError(StateError):
    """A write was attempted on a store opened for reading only."""


class StoreUnavailableError(StateError, ConnectionError):
    """The backend did not accept a write or did not answer a read."""


class CorruptRecordError(StateError):
    """Bytes read from the store are not a record this version of affresco can decode."""


class MirrorError(StateError, ValueError):
    """The offline Parquet mirror refused rows, a name or a read range."""
