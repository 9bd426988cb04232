"""What the RocksDB backend adds to the contract: readers beside the owner, its version cache,
records of the older format, `purge_expired`, options, and the errors of a missing driver (no
server needed)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from state.exceptions import BackendMissingError, CorruptRecordError, ReadOnlyStoreError, StoreUnavailableError
from state.online import OnlineRecord, open_store
from state.online.base import wall_clock_ms
from state.rocksdb import RocksDBOptions, RocksDBStore

NOW = wall_clock_ms()


def rec(entity: str, event_time: int = NOW, **values: object) -> OnlineRecord:
    return OnlineRecord("g", entity, event_time, dict(values) or {"t": event_time})


def test_older_records_do_not_regress_after_reopening(tmp_path: Path) -> None:
    with RocksDBStore(RocksDBOptions(path=tmp_path)) as store:
        store.upsert([rec("e", NOW)])
    with RocksDBStore(RocksDBOptions(path=tmp_path)) as store:  # the version cache starts empty
        store.upsert([rec("e", NOW - 1)])
        assert store.get("g", "e") == rec("e", NOW)


def test_a_tiny_version_cache_stays_exact(tmp_path: Path) -> None:
    with RocksDBStore(RocksDBOptions(path=tmp_path, version_cache_entries=4)) as store:
        store.upsert([rec(f"e{i}", NOW) for i in range(50)])
        store.upsert([rec(f"e{i}", NOW - 1) for i in range(50)])
        store.upsert([rec(f"e{i}", NOW + (i % 2)) for i in range(50)])
        result = store.get_many([("g", f"e{i}") for i in range(50)])
        assert result == {("g", f"e{i}"): rec(f"e{i}", NOW + (i % 2)) for i in range(50)}


@pytest.mark.parametrize("cache", [250_000, 0], ids=["cached", "uncached"])
def test_versions_compare_as_tuples(tmp_path: Path, cache: int) -> None:
    # (t, 1000) and (t + 1, 0) were one number, t·1000 + revision, before revisions outgrew 999.
    newer = OnlineRecord("g", "e", NOW + 1, {"v": "newer"}, b"", 0)
    with RocksDBStore(RocksDBOptions(path=tmp_path, version_cache_entries=cache)) as store:
        store.upsert([newer])
        store.upsert([OnlineRecord("g", "e", NOW, {"v": "older"}, b"", 1_000)])
        assert store.get("g", "e") == newer
        store.upsert([OnlineRecord("g", "e", NOW + 1, {"v": "equal"}, b"replaced", 0)])
        assert store.get("g", "e") == OnlineRecord("g", "e", NOW + 1, {"v": "equal"}, b"replaced", 0)


def format_1(event_time: int, revision: int, expires_at: int, values: bytes, state: bytes) -> bytes:
    """A record as written before format 2: a uint16 revision."""
    return struct.pack("<BqHqI", 1, event_time, revision, expires_at, len(values)) + values + state


def test_records_of_format_1_are_still_read_and_versioned(tmp_path: Path) -> None:
    with RocksDBStore(RocksDBOptions(path=tmp_path)) as store:
        store._db.put(b"g\x00old", format_1(NOW, 999, NOW + 60_000, b'{"t":1}', b"tiles"))
        store._db.put(b"g\x00gone", format_1(NOW, 7, NOW + 60_000, b"{}", b""))
        assert store.get("g", "old", now_ms=NOW) == OnlineRecord("g", "old", NOW, {"t": 1}, b"tiles", 999)
        store.upsert([OnlineRecord("g", "old", NOW, {"t": 0}, b"", 998)])  # older: refused
        assert store.get("g", "old", now_ms=NOW) == OnlineRecord("g", "old", NOW, {"t": 1}, b"tiles", 999)
        assert store.purge_expired(now_ms=NOW + 120_000) == 2  # expires_at of format 1 is read too
        newer = OnlineRecord("g", "old", NOW, {"t": 2}, b"", 5_000)
        store.upsert([newer])
        assert store.get("g", "old") == newer
        assert store._db.get(b"g\x00old")[0] == 2  # rewritten in format 2


def test_an_unknown_record_format_is_reported_with_the_key(tmp_path: Path) -> None:
    with RocksDBStore(RocksDBOptions(path=tmp_path)) as store:
        store._db.put(b"g\x00e", bytes([9]) + bytes(40))
        with pytest.raises(
            CorruptRecordError, match=r"key b'g\\x00e': unknown record format 9, expected one of \[1, 2\]"
        ):
            store.get("g", "e")
        with pytest.raises(CorruptRecordError, match="unknown record format 9"):
            store.upsert([rec("e")])


def test_a_second_owner_is_refused_with_a_hint(tmp_path: Path) -> None:
    with (
        RocksDBStore(RocksDBOptions(path=tmp_path)),
        pytest.raises(StoreUnavailableError, match=r"another process owns it.*read_only"),
    ):
        RocksDBStore(RocksDBOptions(path=tmp_path))


def test_read_only_in_another_process_while_the_owner_writes(tmp_path: Path) -> None:
    reader = textwrap.dedent(
        f"""
        from state.online import open_store
        with open_store("rocksdb", path={str(tmp_path)!r}, access="read_only") as store:
            print(store.get("g", "e").values["t"])
        """
    )
    with RocksDBStore(RocksDBOptions(path=tmp_path)) as owner:
        owner.upsert([rec("e", NOW)])  # in the write-ahead log only, not flushed
        seen = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, check=True, timeout=60)
        assert seen.stdout.strip() == str(NOW)
        owner.upsert([rec("e", NOW + 1)])
        seen = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, check=True, timeout=60)
        assert seen.stdout.strip() == str(NOW + 1)


def test_read_only_sees_a_snapshot_until_refreshed(tmp_path: Path) -> None:
    with RocksDBStore(RocksDBOptions(path=tmp_path)) as owner:
        owner.upsert([rec("e", NOW)])
        with RocksDBStore(RocksDBOptions(path=tmp_path, access="read_only")) as reader:
            owner.upsert([rec("e", NOW + 1)])
            assert reader.get("g", "e") == rec("e", NOW)
            reader.refresh()
            assert reader.get("g", "e") == rec("e", NOW + 1)
            with pytest.raises(ReadOnlyStoreError, match="reading only"):
                reader.upsert([rec("e", NOW + 2)])


def test_secondary_follows_the_owner(tmp_path: Path) -> None:
    with RocksDBStore(RocksDBOptions(path=tmp_path / "db")) as owner:
        owner.upsert([rec("e", NOW)])
        owner.write_checkpoint("offsets", b"1")
        options = RocksDBOptions(path=tmp_path / "db", access="secondary", secondary_path=tmp_path / "secondary")
        with RocksDBStore(options) as follower:
            assert follower.get("g", "e") == rec("e", NOW)
            owner.upsert([rec("e", NOW + 1)])
            owner.write_checkpoint("offsets", b"2")
            assert follower.get("g", "e") == rec("e", NOW + 1)  # reads catch up first
            assert follower.read_checkpoint("offsets") == b"2"
            with pytest.raises(ReadOnlyStoreError):
                follower.delete_group("g")


def test_readers_need_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="no database there"):
        RocksDBStore(RocksDBOptions(path=tmp_path / "missing", access="read_only"))


def test_purge_expired_deletes_only_expired_records(tmp_path: Path) -> None:
    now = wall_clock_ms()
    with RocksDBStore(RocksDBOptions(path=tmp_path)) as store:
        store.upsert([rec("short", now)], ttl_ms=60_000)
        store.upsert([rec("long", now)], ttl_ms=86_400_000)
        store.upsert([rec("forever", now)])
        store.write_checkpoint("offsets", b"kept")
        assert store.purge_expired(now_ms=now + 120_000) == 1
        assert store.get("g", "short", now_ms=now) is None  # gone from disk, not just expired
        assert store.get("g", "long", now_ms=now) == rec("long", now)
        assert store.get("g", "forever", now_ms=now) == rec("forever", now)
        assert store.read_checkpoint("offsets") == b"kept"
        store.upsert([rec("short", now - 1)])  # the purged version no longer blocks older ones
        assert store.get("g", "short") == rec("short", now - 1)


def test_options_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AFFRESCO_ROCKSDB_PATH", str(tmp_path / "env"))
    monkeypatch.setenv("AFFRESCO_ROCKSDB_COMPRESSION", "zstd")
    options = RocksDBOptions()
    assert (options.path, options.compression) == (tmp_path / "env", "zstd")
    with pytest.raises(ValueError, match="frozen"):
        options.path = tmp_path  # type: ignore[misc]
    with pytest.raises(ValueError, match="secondary_path is only used with access='secondary'"):
        RocksDBOptions(secondary_path=tmp_path)


def test_numpy_integers_are_accepted_as_event_times(tmp_path: Path) -> None:
    record = OnlineRecord("g", "e", np.int64(NOW), {"x": np.float64(1.5), "n": np.int32(3)})  # type: ignore[arg-type, dict-item]
    assert type(record.event_time) is int
    with open_store("rocksdb", path=tmp_path) as store:
        store.upsert([record])
        assert store.get("g", "e") == OnlineRecord("g", "e", NOW, {"x": 1.5, "n": 3})


@pytest.mark.parametrize(
    ("kind", "modules", "extra"),
    [
        ("rocksdb", ["rocksdict"], "affresco[stream]"),
        ("cassandra", ["cassandra", "cassandra.cluster"], "affresco[cassandra]"),
    ],
)
def test_a_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, kind: str, modules: list[str], extra: str
) -> None:
    for name in list(sys.modules):
        if name.startswith(("state.rocksdb", "state.cassandra.store")):
            monkeypatch.delitem(sys.modules, name)
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendMissingError, match=re.escape(f"pip install '{extra}'")):
        open_store(kind)  # type: ignore[arg-type]
