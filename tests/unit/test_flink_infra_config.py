"""The Flink cluster's config, processes and checks, without starting anything (no Java, no flink venv needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from infra.exceptions import InfraError, NotAnsweringError
from infra.flink import CLUSTER_ENV, FlinkServer, probe_flink
from infra.settings import InfraSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AFFRESCO_INFRA_") or name == "AFFRESCO_DATA_DIR":
            monkeypatch.delenv(name)


def _fake_venv(root: Path, version: str = "2.2.1") -> Path:
    """A directory shaped like a venv with apache-flink: enough for the checks and the config."""
    home = root / "lib" / "python3.11" / "site-packages" / "pyflink"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "jobmanager.sh").write_text("")
    (home / "conf").mkdir()
    (home / "conf" / "config.yaml").write_text(
        "env:\n  java:\n    opts:\n      all: --add-opens=java.base/java.lang=ALL-UNNAMED\n"
    )
    (home / "conf" / "log4j-console.properties").write_text("")
    (home / "version.py").write_text(f'__version__ = "{version}"\n')
    (root / "bin").mkdir()
    (root / "bin" / "python").write_text("")
    return root


def test_config_carries_ports_dirs_python_and_the_shipped_java_opts(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path / "venv")
    settings = InfraSettings(
        data_dir=tmp_path / "d", flink_venv=venv, flink_rest_port=18081, flink_task_slots=3, flink_taskmanagers=3
    )
    server = FlinkServer(settings)
    server.check_installation()
    server.prepare()
    text = server.config_file.read_text()
    assert "env.java.opts.all: --add-opens=java.base/java.lang=ALL-UNNAMED" in text
    config = server.config()
    assert config["rest.port"] == 18081 and config["rest.bind-address"] == "127.0.0.1"
    assert config["taskmanager.numberOfTaskSlots"] == 3
    assert config["python.executable"] == str(venv / "bin" / "python")
    assert config["state.backend.type"] == "rocksdb"
    assert config["execution.checkpointing.dir"] == (settings.data_dir / "flink" / "checkpoints").as_uri()
    assert config["io.tmp.dirs"] == str(settings.data_dir / "flink" / "tmp")
    assert config["restart-strategy.fixed-delay.attempts"] >= 100
    assert (server.paths.conf / "log4j-console.properties").is_file()

    companions = server.companions()
    assert [c.label for c in companions] == ["flink taskmanager-1", "flink taskmanager-2", "flink taskmanager-3"]
    assert len({c.pid_file for c in companions} | {server.paths.pid_file}) == 4
    for companion in companions:
        assert set(server.member_markers) <= set(companion.markers)
        assert companion.environment["JVM_ARGS"] == " ".join(companion.markers)
        assert companion.environment[CLUSTER_ENV] == str(settings.data_dir)
        assert companion.environment["FLINK_CONF_DIR"] == str(server.paths.conf)
        assert companion.environment["JAVA_HOME"] == str(settings.java_home)
    assert "-Daffresco.infra.role=jobmanager" in server.markers
    assert server.environment()["JVM_ARGS"] == " ".join(server.markers)


def test_a_missing_venv_says_make_flink_venv(tmp_path: Path) -> None:
    server = FlinkServer(InfraSettings(data_dir=tmp_path / "d", flink_venv=tmp_path / "nowhere"))
    with pytest.raises(InfraError, match="make flink-venv"):
        server.check_installation()


def test_another_flink_version_is_refused(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path / "venv", version="2.3.0")
    server = FlinkServer(InfraSettings(data_dir=tmp_path / "d", flink_venv=venv))
    with pytest.raises(InfraError, match=r"apache-flink 2\.3\.0, but AFFRESCO_INFRA_FLINK_VERSION is 2\.2\.1"):
        server.check_installation()


def test_flink_ports_must_differ_from_the_others() -> None:
    with pytest.raises(ValidationError, match="kafka_port and flink_rest_port are both 9092"):
        InfraSettings(flink_rest_port=9092)


def test_probe_of_nothing_listening_does_not_answer() -> None:
    with pytest.raises(NotAnsweringError, match="did not answer /overview"):
        probe_flink("http://127.0.0.1:9", timeout_s=1)
