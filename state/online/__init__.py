"""The online store: one interface (`OnlineStore`), two backends, opened by name.

>>> with open_store("rocksdb", path="/tmp/online") as store:                  # doctest: +SKIP
...     store.upsert([OnlineRecord("zone_demand", "zone-7", 1_700_000_000_000, {"requests_10m": 3})])
...     store.get_many([("zone_demand", "zone-7"), ("zone_weather", "zone-7")])
"""

from __future__ import annotations

from typing import Any, Literal

from state.cassandra.exceptions import CassandraDriverMissingError
from state.exceptions import BackendMissingError, InvalidRecordError
from state.online.base import FeatureValue, OnlineRecord, OnlineStore, RecordKey

__all__ = ["FeatureValue", "OnlineRecord", "OnlineStore", "RecordKey", "StoreKind", "open_store"]

StoreKind = Literal["rocksdb", "cassandra"]

# kind -> (top-level module of the driver, its distribution, the extra that installs it)
_DRIVERS = {
    "rocksdb": ("rocksdict", "rocksdict", "stream"),
    "cassandra": ("cassandra", "cassandra-driver", "cassandra"),
}


def open_store(kind: StoreKind, **options: Any) -> OnlineStore:
    """Open the online store of backend `kind`, configured by `options`.

    - "rocksdb": the fields of `state.rocksdb.RocksDBOptions` (`path`, `access`, …).
    - "cassandra": the fields of `state.cassandra.options.CassandraSettings` (`contact_points`,
      `keyspace`, …) and of `state.cassandra.store.CassandraStoreOptions` (`write_window`, …).

    Unset options come from the environment (`AFFRESCO_ROCKSDB_*`, `AFFRESCO_CASSANDRA_*`).
    The backend's driver is imported only here; if it is missing, `BackendMissingError` names
    the extra to install.
    """
    if kind == "rocksdb":
        try:
            from state.rocksdb import RocksDBOptions, RocksDBStore
        except ImportError as exc:
            if not _is_driver_missing(kind, exc):
                raise
            raise _missing(kind, exc) from exc
        return RocksDBStore(RocksDBOptions(**options))
    if kind == "cassandra":
        try:
            from state.cassandra.session import require_driver
            from state.cassandra.store import CassandraStore

            require_driver()
        except ImportError as exc:
            if not _is_driver_missing(kind, exc):
                raise
            raise _missing(kind, exc) from exc
        return CassandraStore.from_options(**options)
    msg = f"open_store: kind must be 'rocksdb' or 'cassandra', got {kind!r}"
    raise InvalidRecordError(msg)


def _is_driver_missing(kind: str, exc: ImportError) -> bool:
    """Whether `exc` says the driver itself is absent (not an import error of ours)."""
    module = _DRIVERS[kind][0]
    return isinstance(exc, CassandraDriverMissingError) or (exc.name or "").partition(".")[0] == module


def _missing(kind: str, exc: ImportError) -> BackendMissingError:
    _, driver, extra = _DRIVERS[kind]
    msg = f"the {kind} online store needs {driver}, which is not installed: pip install 'affresco[{extra}]' ({exc})"
    return BackendMissingError(msg)
