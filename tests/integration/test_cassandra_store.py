"""What the Cassandra backend adds to the contract: the version is the write timestamp, the TTL is
Cassandra's own, both read modes agree, and failures surface (real node, fresh keyspace)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from state.cassandra.session import close, connect
from state.cassandra.store import CassandraStore, CassandraStoreOptions
from state.exceptions import StoreUnavailableError
from state.online import OnlineRecord
from state.online.base import wall_clock_ms

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]

NOW = wall_clock_ms()


@pytest.fixture(scope="module")
def settings(cassandra_settings: Any) -> Iterator[Any]:
    keyspace = f"test_{uuid.uuid4().hex[:12]}"
    yield cassandra_settings.model_copy(update={"keyspace": keyspace})
    session = connect(cassandra_settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        close(session)


@pytest.fixture
def store(settings: Any) -> Iterator[CassandraStore]:
    with CassandraStore(settings) as opened:
        yield opened


def test_the_version_is_the_write_timestamp_and_the_ttl_is_cassandras(store: CassandraStore) -> None:
    group, now = f"g_{uuid.uuid4().hex[:8]}", wall_clock_ms()
    store.upsert([OnlineRecord(group, "e", now, {"x": 1}, b"", 7)], ttl_ms=3_600_000)
    row = store._session.execute(
        f'SELECT WRITETIME("values"), TTL("values"), expires_at FROM {store.where} WHERE "group" = %s AND entity = %s',
        (group, "e"),
    ).one()
    assert row[0] == now * 1000 + 7
    assert 3_590 <= row[1] <= 3_600
    assert row[2] == now + 3_600_000


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
