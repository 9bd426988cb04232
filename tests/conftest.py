"""Session fixtures: a real Kafka broker, a real Cassandra node, and (for the Flink tests) a real Flink cluster.

Reused when already running (e.g. started by `make test`), else started through `infra/` for the
session and stopped at its end. Each test gets fresh topic names (uuid4) instead of teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.settings import KafkaSettings


@pytest.fixture(scope="session")
def local_infra() -> Iterator[Any]:
    from infra.local import LocalInfra
    from infra.settings import InfraSettings

    infra = LocalInfra(InfraSettings())
    yield infra
    if infra.started_by_this_process:
        infra.down(infra.started_by_this_process)


@pytest.fixture(scope="session")
def kafka_settings(local_infra: Any) -> KafkaSettings:
    local_infra.up({"kafka"})
    return KafkaSettings()


@pytest.fixture(scope="session")
def cassandra_settings(local_infra: Any) -> Any:
    from state.cassandra.options import CassandraSettings

    local_infra.up({"cassandra"})
    return CassandraSettings()


@pytest.fixture(scope="session")
def flink_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Flink session cluster (a JobManager, two TaskManagers) of the session's own: data dir, ports."""
    from tests.integration.flink_helpers import start_flink_cluster

    cluster = start_flink_cluster(tmp_path_factory.mktemp("flink-cluster").resolve())
    yield cluster
    cluster.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """A fresh name per call: `unique("trips")` -> 'test.trips.3f2a…'."""

    def make(prefix: str) -> str:
        return f"test.{prefix}.{uuid.uuid4().hex[:10]}"

    return make
