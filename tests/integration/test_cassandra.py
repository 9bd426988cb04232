"""A real Cassandra node through cassandra-driver: keyspace, table, insert, select."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


def test_keyspace_insert_select(cassandra_settings: Any) -> None:
    from state.cassandra.session import connect

    session = connect(cassandra_settings)
    try:
        ks = f"test_{uuid.uuid4().hex[:10]}"
        session.execute(
            f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        session.execute(f"CREATE TABLE {ks}.kv (k text PRIMARY KEY, v double, t bigint)")
        insert = session.prepare(f"INSERT INTO {ks}.kv (k, v, t) VALUES (?, ?, ?)")
        for i in range(10):
            session.execute(insert, (f"key-{i}", i * 1.5, 1_700_000_000_000 + i))
        select = session.prepare(f"SELECT v, t FROM {ks}.kv WHERE k = ?")
        row = session.execute(select, ("key-7",)).one()
        assert (row.v, row.t) == (10.5, 1_700_000_000_007)
        assert session.execute(select, ("missing",)).one() is None
        count = session.execute(f"SELECT count(*) FROM {ks}.kv").one()
        assert count[0] == 10
        session.execute(f"DROP KEYSPACE {ks}")
    finally:
        session.cluster.shutdown()


def test_release_version_is_cassandra_5(cassandra_settings: Any) -> None:
    from state.cassandra.session import ping

    assert ping(cassandra_settings).startswith("5.0")
