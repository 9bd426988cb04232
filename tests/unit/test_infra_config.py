"""Config rendering, settings validation and the checks `LocalInfra` makes before starting anything.

No server is started here: these run in milliseconds, without Java or Maven.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from infra.cassandra import CassandraServer
from infra.exceptions import InfraError, JavaError, PortConflictError, UnknownServiceError
from infra.jars import MARKER, jars_ready
from infra.kafka import KafkaServer, new_cluster_id
from infra.local import LocalInfra
from infra.render import render
from infra.server import heap_flags
from infra.settings import InfraSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AFFRESCO_INFRA_") or name == "AFFRESCO_DATA_DIR":
            monkeypatch.delenv(name)


def _free_ports(n: int) -> list[int]:
    """Ports nothing listens on right now (so these tests never see a real server)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.fixture
def settings(tmp_path: Path) -> InfraSettings:
    kafka, controller, cql, storage, rest, rpc, blob = _free_ports(7)
    return InfraSettings(
        data_dir=tmp_path / "data",
        kafka_port=kafka,
        kafka_controller_port=controller,
        cassandra_port=cql,
        cassandra_storage_port=storage,
        flink_rest_port=rest,
        flink_rpc_port=rpc,
        flink_blob_port=blob,
    )


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port held by a listening socket of this test process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_kafka_properties_carry_ports_and_dirs(settings: InfraSettings) -> None:
    kafka = KafkaServer(settings)
    kafka.render_config()
    props = _properties(kafka.server_properties.read_text())

    k, c = settings.kafka_port, settings.kafka_controller_port
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{k},CONTROLLER://127.0.0.1:{c}"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{k}"
    assert props["controller.quorum.voters"] == f"1@127.0.0.1:{c}"
    assert props["log.dirs"] == str(settings.data_dir / "kafka" / "data")
    assert props["process.roles"] == "broker,controller"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.max.timeout.ms"] == "3600000"
    assert "{{" not in kafka.server_properties.read_text()
    assert kafka.log4j_config.read_text().count("appender.stdout.type=Console") == 1


def test_cassandra_yaml_carries_ports_and_dirs(settings: InfraSettings) -> None:
    cassandra = CassandraServer(settings)
    cassandra.render_config()
    text = cassandra.config_file.read_text()
    data = settings.data_dir / "cassandra" / "data"

    assert f"native_transport_port: {settings.cassandra_port}\n" in text
    assert f"storage_port: {settings.cassandra_storage_port}\n" in text
    assert "listen_address: 127.0.0.1\n" in text
    assert f'seeds: "127.0.0.1:{settings.cassandra_storage_port}"' in text
    assert f'commitlog_directory: "{data}/commitlog"' in text
    assert f'  - "{data}/data"' in text
    for key in ("hints_directory", "saved_caches_directory", "cdc_raw_directory"):
        assert f'{key}: "{data}/' in text
    assert "{{" not in text
    assert "<configuration" in cassandra.logback_config.read_text()


def test_render_refuses_missing_and_unused_values() -> None:
    assert render("a={{ a }} b={{b}}", {"a": 1, "b": "x"}) == "a=1 b=x"
    with pytest.raises(InfraError, match=r"no value was given for \['b'\]"):
        render("a={{ a }} b={{ b }}", {"a": 1}, name="t.properties")
    with pytest.raises(InfraError, match=r"\['c'\] have no placeholder"):
        render("a={{ a }}", {"a": 1, "c": 2})


def test_log4j_lookups_survive_rendering() -> None:
    assert render("${sys:kafka.logs.dir}/{{ x }}", {"x": "y"}) == "${sys:kafka.logs.dir}/y"


def test_settings_defaults() -> None:
    settings = InfraSettings()
    assert settings.data_dir == (Path.cwd() / ".affresco").resolve()
    assert settings.java == Path("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
    assert (settings.kafka_version, settings.cassandra_version) == ("4.1.1", "5.0.6")
    assert (settings.kafka_port, settings.kafka_controller_port) == (9092, 9093)
    assert (settings.cassandra_port, settings.cassandra_storage_port) == (9042, 7000)
    assert settings.kafka_bootstrap == "127.0.0.1:9092"


@pytest.mark.parametrize("variable", ["AFFRESCO_DATA_DIR", "AFFRESCO_INFRA_DATA_DIR"])
def test_data_dir_from_either_env_var(variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, str(tmp_path / "x"))
    assert InfraSettings().data_dir == tmp_path / "x"


def test_settings_read_env_and_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFFRESCO_INFRA_KAFKA_PORT", "29092")
    monkeypatch.setenv("AFFRESCO_INFRA_CASSANDRA_HEAP", "2g")
    settings = InfraSettings()
    assert (settings.kafka_port, settings.cassandra_heap) == (29092, "2g")
    with pytest.raises(ValidationError):
        settings.kafka_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kafka_port", 70000, "less than 65536"),
        ("cassandra_port", 9092, "kafka_port and cassandra_port are both 9092"),
        ("kafka_heap", "lots", "should match pattern"),
        ("kafka_version", "latest", "should match pattern"),
        ("no_such_setting", 1, "Extra inputs are not permitted"),
    ],
)
def test_settings_reject_bad_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        InfraSettings(**{field: value})


def test_heap_flags_start_small() -> None:
    assert heap_flags("1g") == ["-Xms256m", "-Xmx1g"]
    assert heap_flags("128m") == ["-Xms128m", "-Xmx128m"]


def test_commands_pin_java_and_carry_markers(settings: InfraSettings) -> None:
    cassandra = CassandraServer(settings)
    cassandra.paths.libs.mkdir(parents=True)
    (cassandra.paths.libs / "jamm-0.4.0.jar").touch()
    kafka_cmd, cassandra_cmd = KafkaServer(settings).command(), cassandra.command()
    for command, service in ((kafka_cmd, "kafka"), (cassandra_cmd, "cassandra")):
        assert command[0] == str(settings.java)
        assert f"-Daffresco.infra.service={service}" in command
        assert f"-Daffresco.infra.data_dir={settings.data_dir}" in command
    assert kafka_cmd[-2:] == ["kafka.Kafka", str(settings.data_dir / "kafka" / "conf" / "server.properties")]
    assert f"-javaagent:{cassandra.paths.libs / 'jamm-0.4.0.jar'}" in cassandra_cmd
    assert "-Dcassandra.skip_wait_for_gossip_to_settle=0" in cassandra_cmd


def test_cassandra_command_needs_jamm(settings: InfraSettings) -> None:
    with pytest.raises(InfraError, match="jamm"):
        CassandraServer(settings).command()


def test_cluster_id_shape() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_cluster_id_is_kept(settings: InfraSettings) -> None:
    kafka = KafkaServer(settings)
    first = kafka.cluster_id()
    assert kafka.cluster_id() == first == kafka.cluster_id_file.read_text().strip()


def test_java_25_refused_for_cassandra(tmp_path: Path) -> None:
    java_home = tmp_path / "jdk-25"
    (java_home / "bin").mkdir(parents=True)
    (java_home / "bin" / "java").touch(mode=0o755)
    (java_home / "release").write_text('JAVA_VERSION="25.0.1"\n')
    settings = InfraSettings(data_dir=tmp_path / "d", java_home=java_home)
    with pytest.raises(JavaError, match="SecurityManager"):
        CassandraServer(settings).check_java()
    KafkaServer(settings).check_java()


def test_missing_java_is_named(tmp_path: Path) -> None:
    settings = InfraSettings(data_dir=tmp_path / "d", java_home=tmp_path / "nowhere")
    with pytest.raises(JavaError, match="AFFRESCO_INFRA_JAVA_HOME"):
        KafkaServer(settings).check_java()


def test_jars_marker_must_match_versions(tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    assert not jars_ready(libs, {"kafka.version": "4.1.1"})
    libs.mkdir()
    (libs / MARKER).write_text('{"kafka.version": "4.1.1"}')
    assert jars_ready(libs, {"kafka.version": "4.1.1"})
    assert not jars_ready(libs, {"kafka.version": "4.4.0"})


def test_unknown_service_is_named(settings: InfraSettings) -> None:
    with pytest.raises(UnknownServiceError, match=r"'zookeeper'.*expected some of kafka, cassandra"):
        LocalInfra(settings).up({"zookeeper"})


def test_status_of_nothing_running(settings: InfraSettings) -> None:
    statuses = LocalInfra(settings).status()
    assert [(s.name, s.state, s.pid, s.answering) for s in statuses] == [
        ("kafka", "stopped", None, False),
        ("cassandra", "stopped", None, False),
        ("flink", "stopped", None, False),
    ]


def test_foreign_process_on_a_port_is_named(settings: InfraSettings, listening_port: int) -> None:
    infra = LocalInfra(settings.model_copy(update={"kafka_controller_port": listening_port}))
    with pytest.raises(PortConflictError) as caught:
        infra.up({"kafka"})
    message = str(caught.value)
    assert f"port {listening_port} on 127.0.0.1 (AFFRESCO_INFRA_KAFKA_CONTROLLER_PORT)" in message
    assert f"pid {os.getpid()}" in message
    assert not infra.server("kafka").paths.pid_file.exists()


def test_down_with_nothing_running(settings: InfraSettings) -> None:
    assert LocalInfra(settings).down() == set()
