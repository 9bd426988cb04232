"""The RocksDB backend of the online store (rocksdict is imported in this subpackage only)."""

from state.rocksdb.options import RocksDBOptions
from state.rocksdb.store import RocksDBStore

__all__ = ["RocksDBOptions", "RocksDBStore"]
