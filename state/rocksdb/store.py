"""`RocksDBStore`: the embedded online store, one RocksDB database through rocksdict.

One process owns the database (`access="read_write"`; RocksDB locks it, a second owner gets
`StoreUnavailableError`), and uses it from one thread. Other processes — `affresco features get`
while a processor runs, a consistency check — read beside it:

- `access="read_only"`: a consistent snapshot as of opening, including writes the owner has not
  flushed yet (RocksDB replays the owner's write-ahead log). `refresh()` reopens it.
- `access="secondary"`: follows the owner. Reads first catch up with it (RocksDB's
  `try_catch_up_with_primary`, ~1-3 ms while the owner writes; at most every
  `catch_up_interval_ms`), so they see its writes. Needs a scratch directory (`secondary_path`,
  a temporary one by default).

Both were exercised against an owner upserting ~80k records/s with 1 MB memtables (constant
flushes and compactions): hundreds of read-only opens and thousands of secondary reads, no error.

An upsert reads the stored versions of the batch with one multi-get, then writes the winners
(and an optional checkpoint) in one atomic `WriteBatch`. Versions compare as (event_time,
revision) tuples; a record of a version equal to the stored one replaces it (the last write
wins), and a record is one value, so values and state always come from one write.

>>> with RocksDBStore(RocksDBOptions(path="/tmp/online")) as store:       # doctest: +SKIP
...     store.upsert([OnlineRecord("zone_demand", "zone-7", 1_700_000_000_000, {"requests_10m": 3})])
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import cast

import rocksdict

from state.exceptions import StoreUnavailableError
from state.online.base import OnlineRecord, OnlineStore, RecordKey, wall_clock_ms
from state.rocksdb.codec import (
    NEVER,
    RECORDS_START,
    checkpoint_key,
    decode_expires_at,
    decode_record,
    decode_version,
    encode_record,
    group_range,
    record_key,
)
from state.rocksdb.options import RocksDBOptions

__all__ = ["RocksDBStore"]

logger = logging.getLogger(__name__)

_PURGE_BATCH = 10_000


class RocksDBStore(OnlineStore):
    """The online store in a local RocksDB database (see the module docstring for concurrency)."""

    embedded = True

    def __init__(self, options: RocksDBOptions | None = None) -> None:
        self.options = options if options is not None else RocksDBOptions()
        self.writable = self.options.access == "read_write"
        self.follows_owner = self.options.access == "secondary"
        self._scratch: Path | None = None
        # Versions this process wrote, so an upsert need not read them back. Exact because the
        # read_write owner is the only writer (RocksDB's lock).
        self._versions: dict[bytes, tuple[int, int]] = {}
        self._caught_up_at = float("-inf")
        self._write_options = self.options.write_options()
        self._db = self._open()

    @property
    def path(self) -> Path:
        return self.options.path

    def refresh(self) -> None:
        """Make the owner's newer writes visible: catch up (secondary) or reopen (read-only).

        Does nothing for the owner itself, which always sees its own writes.
        """
        self._check_open("refresh")
        if self.options.access == "secondary":
            try:
                self._db.try_catch_up_with_primary()
                self._caught_up_at = time.monotonic()
            except Exception as exc:  # rocksdict raises plain Exception
                msg = f"RocksDB secondary at {self.path}: could not catch up with the primary: {exc}"
                raise StoreUnavailableError(msg) from exc
        elif self.options.access == "read_only":
            self._db.close()
            self._db = self._open()

    def purge_expired(self, *, now_ms: int | None = None) -> int:
        """Delete the records expired at `now_ms` (default: now); returns how many.

        Expired records read as missing but stay on disk until overwritten; run this now and
        then (e.g. hourly) so entities that went quiet do not pile up.
        """
        self._check_writable("purge_expired")
        now = wall_clock_ms() if now_ms is None else now_ms
        purged = 0
        batch = rocksdict.WriteBatch(raw_mode=True)
        for raw_key, raw_data in self._db.items(from_key=RECORDS_START):
            key, data = cast(bytes, raw_key), cast(bytes, raw_data)
            if now > decode_expires_at(data, key):
                batch.delete(key)
                self._versions.pop(key, None)
                purged += 1
                if batch.len() >= _PURGE_BATCH:
                    self._db.write(batch, self._write_options)
                    batch = rocksdict.WriteBatch(raw_mode=True)
        if not batch.is_empty():
            self._db.write(batch, self._write_options)
        return purged

    # -- OnlineStore hooks ------------------------------------------------------------------

    def _write(self, records: list[OnlineRecord], ttl_ms: int | None, checkpoint: tuple[str, bytes] | None) -> None:
        keys = [record_key(record.group, record.entity) for record in records]
        versions = self._stored_versions(keys)
        batch = rocksdict.WriteBatch(raw_mode=True)
        written: dict[bytes, tuple[int, int]] = {}
        for key, record, stored in zip(keys, records, versions, strict=True):
            version = (record.event_time, record.revision)
            if stored is not None and version < stored:
                continue
            # Clamped: a TTL of centuries on a far event time would not fit the int64.
            expires_at = NEVER if ttl_ms is None else min(record.event_time + ttl_ms, NEVER)
            batch.put(key, encode_record(record, expires_at))
            written[key] = version
        if checkpoint is not None:
            batch.put(checkpoint_key(checkpoint[0]), checkpoint[1])
        if not batch.is_empty():
            self._db.write(batch, self._write_options)
        self._remember(written)

    def _stored_versions(self, keys: list[bytes]) -> list[tuple[int, int] | None]:
        """The stored version (event_time, revision) of each key: from the cache, else one multi-get."""
        cache = self._versions
        versions: list[tuple[int, int] | None] = [cache.get(key) for key in keys]
        missing = [index for index, version in enumerate(versions) if version is None]
        if missing:
            stored = cast(list[bytes | None], self._db.get([keys[index] for index in missing]))
            for index, data in zip(missing, stored, strict=True):
                if data is not None:
                    versions[index] = decode_version(data, keys[index])
        return versions

    def _remember(self, written: dict[bytes, tuple[int, int]]) -> None:
        limit = self.options.version_cache_entries
        if not limit:
            return
        cache = self._versions
        cache.update(written)
        if len(cache) > limit:
            # Keep the most recently inserted half; a dict iterates in insertion order.
            keep = list(cache.items())[len(cache) - limit // 2 :]
            self._versions = dict(keep)

    def _read(self, keys: list[RecordKey], now_ms: int) -> dict[RecordKey, OnlineRecord]:
        self._maybe_catch_up()
        stored = cast(list[bytes | None], self._db.get([record_key(group, entity) for group, entity in keys]))
        found: dict[RecordKey, OnlineRecord] = {}
        for (group, entity), data in zip(keys, stored, strict=True):
            if data is not None:
                record = decode_record(group, entity, data, now_ms)
                if record is not None:
                    found[(group, entity)] = record
        return found

    def _delete_group(self, group: str) -> None:
        start, end = group_range(group)
        self._db.delete_range(start, end, self._write_options)
        self._versions = {key: version for key, version in self._versions.items() if not start <= key < end}

    def _write_checkpoint(self, name: str, data: bytes) -> None:
        self._db.put(checkpoint_key(name), data, self._write_options)

    def _read_checkpoint(self, name: str) -> bytes | None:
        self._maybe_catch_up()
        data = self._db.get(checkpoint_key(name))
        return None if data is None else bytes(data)

    def _maybe_catch_up(self) -> None:
        if self.options.access != "secondary":
            return
        if (time.monotonic() - self._caught_up_at) * 1000 >= self.options.catch_up_interval_ms:
            self.refresh()

    def _close(self) -> None:
        self._db.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    # -- opening ----------------------------------------------------------------------------

    def _open(self) -> rocksdict.Rdict:
        options = self.options
        path = options.path
        if options.access == "read_write":
            path.mkdir(parents=True, exist_ok=True)
            access = rocksdict.AccessType.read_write()
        elif options.access == "read_only":
            access = rocksdict.AccessType.read_only(False)
        else:
            if options.secondary_path is not None:
                options.secondary_path.mkdir(parents=True, exist_ok=True)
                scratch = options.secondary_path
            else:
                scratch = self._scratch = self._scratch or Path(tempfile.mkdtemp(prefix="affresco-rocksdb-secondary-"))
            access = rocksdict.AccessType.secondary(str(scratch))
        if options.access != "read_write" and not (path / "CURRENT").exists():
            msg = f"RocksDB store at {path}: no database there to open {options.access!r} (no CURRENT file)"
            raise StoreUnavailableError(msg)
        try:
            return rocksdict.Rdict(str(path), options.to_options(), access_type=access)
        except Exception as exc:  # rocksdict raises plain Exception for every RocksDB status
            hint = ""
            if "lock" in str(exc).lower():
                hint = (
                    "; another process owns it (one read_write owner at a time) — "
                    "open with access='read_only' or 'secondary' to read beside it"
                )
            msg = f"RocksDB store at {path}: could not open it {options.access!r}: {exc}{hint}"
            raise StoreUnavailableError(msg) from exc
