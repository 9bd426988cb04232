"""RocksDB store options, read from `AFFRESCO_ROCKSDB_*` environment variables.

>>> RocksDBOptions(path="/tmp/online", access="read_only").access
'read_only'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    import rocksdict

__all__ = ["Access", "RocksDBOptions"]

#: How a process opens the database. One process at a time may open it `read_write` (RocksDB
#: locks it); any number of others may read beside it with `read_only` (a snapshot as of opening,
#: including writes still in the primary's log) or `secondary` (follows the primary on `refresh()`).
Access = Literal["read_write", "read_only", "secondary"]

_MB = 1024 * 1024


class RocksDBOptions(BaseSettings):
    """Where the embedded online store lives, how it is opened, and how RocksDB is tuned."""

    model_config = SettingsConfigDict(env_prefix="AFFRESCO_ROCKSDB_", frozen=True, extra="forbid")

    path: Path = Field(Path(".affresco/online/rocksdb"), description="Directory of the database.")
    access: Access = Field("read_write", description="read_write (one owner), read_only or secondary.")
    secondary_path: Path | None = Field(
        None, description="Scratch directory of a secondary instance; a temporary one when unset."
    )
    catch_up_interval_ms: int = Field(
        0,
        ge=0,
        description="secondary only: reads first catch up with the owner if the last catch-up is older than this "
        "(0: every read; a catch-up costs ~1-3 ms while the owner writes).",
    )
    sync_writes: bool = Field(
        False, description="fsync the write-ahead log on every write (survives power loss, not just a crash)."
    )
    disable_wal: bool = Field(False, description="Skip the write-ahead log: faster, loses unflushed writes on crash.")
    compression: Literal["none", "lz4", "zstd", "snappy"] = "lz4"
    write_buffer_mb: int = Field(16, gt=0, description="Size of one memtable (16 MB measured faster than 64 here).")
    max_write_buffers: int = Field(3, ge=2)
    block_cache_mb: int = Field(128, ge=0, description="LRU cache of uncompressed blocks; 0 disables it.")
    bloom_bits_per_key: int = Field(10, ge=0, description="Bloom filter for point lookups; 0 disables it.")
    version_cache_entries: int = Field(
        250_000,
        ge=0,
        description="Versions of recently written keys kept in memory so upserts skip reading them (~200 B each).",
    )
    background_jobs: int = Field(2, ge=1, description="Flush and compaction threads.")

    @model_validator(mode="after")
    def _secondary_path_only_for_secondary(self) -> RocksDBOptions:
        if self.secondary_path is not None and self.access != "secondary":
            msg = f"secondary_path is only used with access='secondary', got access={self.access!r}"
            raise ValueError(msg)
        return self

    def to_options(self) -> rocksdict.Options:
        """The `rocksdict.Options` (raw mode: bytes keys and values) these settings describe."""
        import rocksdict

        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(self.access == "read_write")
        options.set_max_background_jobs(self.background_jobs)
        options.set_write_buffer_size(self.write_buffer_mb * _MB)
        options.set_max_write_buffer_number(self.max_write_buffers)
        options.set_compression_type(getattr(rocksdict.DBCompressionType, self.compression)())
        table = rocksdict.BlockBasedOptions()
        if self.block_cache_mb:
            table.set_block_cache(rocksdict.Cache(self.block_cache_mb * _MB))
        else:
            table.disable_cache()
        if self.bloom_bits_per_key:
            table.set_bloom_filter(self.bloom_bits_per_key, False)
        options.set_block_based_table_factory(table)
        if self.access == "secondary":
            # A secondary keeps every table file open, so the primary's compactions cannot pull
            # files from under it (RocksDB's advice for secondary instances).
            options.set_max_open_files(-1)
        return options

    def write_options(self) -> rocksdict.WriteOptions:
        """The `rocksdict.WriteOptions` of every write."""
        import rocksdict

        options = rocksdict.WriteOptions()
        options.sync = self.sync_writes
        setattr(options, "disable_wal", self.disable_wal)  # a property in rocksdict 0.3.29; its stub says method  # noqa: B010
        return options
