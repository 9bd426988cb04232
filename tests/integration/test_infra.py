"""`infra/` against the servers of the test session: status, idempotent `up`, and the readiness probes."""

from __future__ import annotations

from typing import Any

import pytest

from infra.cassandra import probe_cassandra
from infra.kafka import probe_kafka
from infra.local import LocalInfra

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]


@pytest.fixture(scope="module")
def infra(local_infra: Any, kafka_settings: Any, cassandra_settings: Any) -> LocalInfra:
    """The session's `LocalInfra`, once both servers run."""
    session_infra = local_infra
    assert isinstance(session_infra, LocalInfra)
    return session_infra


def test_status_reports_both_running_and_answering(infra: LocalInfra) -> None:
    statuses = {s.name: s for s in infra.status({"kafka", "cassandra"})}
    assert set(statuses) == {"kafka", "cassandra"}
    for name, status in statuses.items():
        # "external": the servers were already up from another data directory, which the fixture reuses.
        assert status.state in ("running", "external"), (name, status)
        assert status.answering, (name, status.detail)
        assert status.pid is not None
    assert statuses["kafka"].port == infra.settings.kafka_port
    assert "1 broker(s)" in statuses["kafka"].detail
    assert statuses["cassandra"].detail == "Cassandra 5.0.6"


def test_up_again_starts_nothing(infra: LocalInfra) -> None:
    results = {r.name: r for r in infra.ensure({"kafka", "cassandra"})}
    assert {r.action for r in results.values()} <= {"reused", "external"}
    assert infra.up({"kafka", "cassandra"}) == set()


def test_probes_answer(infra: LocalInfra, kafka_settings: Any) -> None:
    assert "1 broker(s)" in probe_kafka(kafka_settings.bootstrap_servers, timeout_s=10)
    assert probe_cassandra(infra.settings.host, infra.settings.cassandra_port, timeout_s=10) == "5.0.6"
