"""Errors of the Cassandra backend, rooted at `CassandraError`.

CassandraError
├── CassandraDriverMissingError   cassandra-driver is not installed (names the extra to install)
└── CassandraUnavailableError     no contact point answered, or a query timed out
"""

from __future__ import annotations

__all__ = ["CassandraDriverMissingError", "CassandraError", "CassandraUnavailableError"]


class CassandraError(Exception):
    """Root of the errors of the Cassandra backend."""


class CassandraDriverMissingError(CassandraError, ImportError):
    """cassandra-driver is not installed."""


class CassandraUnavailableError(CassandraError, ConnectionError):
    """Cassandra could not be reached, or did not answer in time."""
