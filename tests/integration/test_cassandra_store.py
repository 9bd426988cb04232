"""What the Cassandra backend adds to the contract: the version is the clustering key and older
versions are pruned, the record is one cell with Cassandra's TTL, batches never draw the node's
size warning, `delete_group` spares newer writes, both read modes agree, and failures surface
(real node, fresh keyspace)."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from state.cassandra.store import CassandraStore, CassandraStoreOptions
from state.exceptions import StoreUnavailableError
from state.online import OnlineRecord
from state.online.base import wall_clock_ms
from tests.integration.helpers import fresh_keyspace

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]

NOW = wall_clock_ms()


@pytest.fixture(scope="module")
def settings(cassandra_settings: Any) -> Iterator[Any]:
    with fresh_keyspace(cassandra_settings) as fresh:
        yield fresh


@pytest.fixture
def store(settings: Any) -> Iterator[CassandraStore]:
    with CassandraStore(settings) as opened:
        yield opened


def rows(store: CassandraStore, group: str, entity: str) -> list[Any]:
    """The stored rows of one entity, greatest version first."""
    return list(
        store._session.execute(
            f"SELECT event_time, revision, TTL(record), WRITETIME(record) FROM {store.where} "
            'WHERE "group" = %s AND entity = %s',
            (group, entity),
        )
    )


def test_one_row_per_entity_one_cell_with_cassandras_ttl(store: CassandraStore) -> None:
    group, now = f"g_{uuid.uuid4().hex[:8]}", wall_clock_ms()
    store.upsert([OnlineRecord(group, "e", now - 5, {"x": 0}, b"", 2**40)], ttl_ms=3_600_000)
    store.upsert([OnlineRecord(group, "e", now, {"x": 1}, b"s", 7)], ttl_ms=3_600_000)
    ((event_time, revision, ttl_s, written_us),) = rows(store, group, "e")  # the older version is pruned
    assert (event_time, revision) == (now, 7)
    assert 3_590 <= ttl_s <= 3_600
    # A client-side write time (the wall clock), no longer derived from the version.
    assert abs(written_us - wall_clock_ms() * 1000) < 60_000_000


def test_a_stale_version_written_late_stays_below_unread(store: CassandraStore) -> None:
    group = f"g_{uuid.uuid4().hex[:8]}"
    newer = OnlineRecord(group, "e", NOW, {"x": 2}, b"new", 10)
    store.upsert([newer])
    store.upsert([OnlineRecord(group, "e", NOW, {"x": 1}, b"old", 5)])
    assert [tuple(row[:2]) for row in rows(store, group, "e")] == [(NOW, 10), (NOW, 5)]
    assert store.get(group, "e") == newer
    newest = OnlineRecord(group, "e", NOW + 1, {"x": 3}, b"newest", 0)
    store.upsert([newest])
    assert [tuple(row[:2]) for row in rows(store, group, "e")] == [(NOW + 1, 0)]
    assert store.get(group, "e") == newest


def test_batches_never_draw_the_batch_size_warning(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    # Records around the size where a few fill a 5 KiB batch; the node sends its warning to the
    # client too, which the driver logs as "Server warning: Batch for … is of size …".
    rng = random.Random(5)
    group = f"g_{uuid.uuid4().hex[:8]}"
    records = [
        OnlineRecord(
            group, f"e{i}", NOW, {"s": "x" * rng.randint(10, 700)}, bytes(rng.choice((0, rng.randrange(1_500))))
        )
        for i in range(3_000)
    ]
    with CassandraStore(settings) as store, caplog.at_level(logging.WARNING, logger="cassandra"):
        store.upsert(records)
        rewritten = [replace(r, revision=1) for r in records]
        store.upsert(rewritten)
        assert store.get_many([r.key for r in rewritten[:50]]) == {r.key: r for r in rewritten[:50]}
    assert [r.getMessage() for r in caplog.records if "Server warning" in r.getMessage()] == []


def test_delete_group_spares_a_greater_version_written_after_its_scan(store: CassandraStore) -> None:
    group = f"g_{uuid.uuid4().hex[:8]}"
    store.upsert([OnlineRecord(group, f"e{i}", NOW, {"i": i}, b"", 3) for i in range(3)])
    scanned = list(store._group_versions(group))
    assert sorted(scanned) == [(f"e{i}", NOW, 3) for i in range(3)]
    newer = OnlineRecord(group, "e1", NOW, {"i": 1}, b"newer", 4)
    store.upsert([newer])
    store._delete_up_to(group, scanned)
    assert store.get_many([(group, f"e{i}") for i in range(3)]) == {
        (group, "e0"): None,
        (group, "e1"): newer,
        (group, "e2"): None,
    }


def test_both_read_modes_agree(settings: Any) -> None:
    group, other = f"g_{uuid.uuid4().hex[:8]}", f"g_{uuid.uuid4().hex[:8]}"
    records = [OnlineRecord(g, f"e{i}", NOW + i, {"i": i}) for g in (group, other) for i in range(5)]
    keys = [(g, f"e{i}") for g in (group, other) for i in range(7)]
    results = []
    for mode in ("per_key", "in_per_group"):
        with CassandraStore(settings, CassandraStoreOptions(read_mode=mode)) as store:
            store.upsert(records)
            results.append(store.get_many(keys))
    assert results[0] == results[1]
    assert sum(record is not None for record in results[0].values()) == 10


def test_write_failures_surface_with_where_and_how_many(settings: Any) -> None:
    options = CassandraStoreOptions(table=f"t_{uuid.uuid4().hex[:8]}")
    with CassandraStore(settings, options) as store:
        store._session.execute(f"DROP TABLE {store.where}", timeout=60)
        with pytest.raises(StoreUnavailableError, match=rf"upsert into {store.where}: \d+ request\(s\) failed"):
            store.upsert([OnlineRecord("g", f"e{i}", NOW, {}) for i in range(30)])
        with pytest.raises(StoreUnavailableError, match=rf"get_many from {store.where}"):
            store.get("g", "e0")


def test_a_missing_schema_is_reported_when_not_created(cassandra_settings: Any) -> None:
    missing = cassandra_settings.model_copy(update={"keyspace": f"missing_{uuid.uuid4().hex[:8]}"})
    with pytest.raises(StoreUnavailableError, match="schema missing"):
        CassandraStore(missing, CassandraStoreOptions(create_schema=False))
