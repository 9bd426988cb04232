"""A single-node Kafka (KRaft: broker and controller in one process) built from Maven Central jars."""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra.exceptions import NotAnsweringError, ServiceStartError
from infra.render import render_to
from infra.server import Server, heap_flags

__all__ = ["KafkaServer", "new_cluster_id", "probe_kafka"]

logger = logging.getLogger(__name__)

_MAIN = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
_FORMAT_TIMEOUT_S = 120.0


class KafkaServer(Server):
    """Kafka in KRaft mode with a static `controller.quorum.voters`, one node, plaintext listeners."""

    name = "kafka"
    java_range = (17, 25)

    @property
    def version(self) -> str:
        return self.settings.kafka_version

    @property
    def ports(self) -> dict[str, int]:
        return {
            "kafka_port": self.settings.kafka_port,
            "kafka_controller_port": self.settings.kafka_controller_port,
        }

    @property
    def start_timeout_s(self) -> float:
        return self.settings.kafka_start_timeout_s

    @property
    def server_properties(self) -> Path:
        return self.paths.conf / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.paths.conf / "log4j2.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.paths.home / "cluster-id"

    def maven_properties(self) -> dict[str, str]:
        return {"kafka.version": self.version, "log4j.version": self.settings.kafka_log4j_version}

    def render_config(self) -> None:
        """Write server.properties and the log4j2 config from the templates."""
        settings = self.settings
        render_to(
            "kafka-server.properties",
            {
                "host": settings.host,
                "port": settings.kafka_port,
                "controller_port": settings.kafka_controller_port,
                "log_dirs": self.paths.data,
            },
            self.server_properties,
        )
        render_to("kafka-log4j2.properties", {"log_file": self.paths.log_file}, self.log4j_config)

    def prepare(self) -> None:
        self.paths.make_dirs()
        self.render_config()
        if not (self.paths.data / "meta.properties").exists():
            self.format_storage(self.cluster_id())

    def cluster_id(self) -> str:
        """The cluster id of this data directory: the formatted one, else the stored one, else a new one."""
        formatted = _meta_cluster_id(self.paths.data / "meta.properties")
        stored = self.cluster_id_file.read_text(encoding="utf-8").strip() if self.cluster_id_file.exists() else ""
        cluster_id = formatted or stored or new_cluster_id()
        if cluster_id != stored:
            self.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
            self.cluster_id_file.write_text(cluster_id + "\n", encoding="utf-8")
        return cluster_id

    def format_storage(self, cluster_id: str) -> None:
        """Format the KRaft log directory (`kafka.tools.StorageTool format`), once per data directory."""
        command = [
            str(self.settings.java),
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            str(self.paths.libs / "*"),
            _STORAGE_TOOL,
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.server_properties),
            "--ignore-formatted",
        ]
        logger.info("formatting Kafka storage in %s (cluster id %s)", self.paths.data, cluster_id)
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=self.environment(),
                timeout=_FORMAT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            msg = f"kafka: formatting storage with `{' '.join(command)}` failed: {exc}"
            raise ServiceStartError(msg) from exc
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-40:])
            msg = (
                f"kafka: formatting storage in {self.paths.data} failed (exit code {result.returncode}) "
                f"with `{' '.join(command)}`; its last output:\n{output}"
            )
            raise ServiceStartError(msg)

    def command(self) -> list[str]:
        return [
            str(self.settings.java),
            *heap_flags(self.settings.kafka_heap),
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            f"-Dkafka.logs.dir={self.paths.log_dir}",
            *self.markers,
            "-cp",
            str(self.paths.libs / "*"),
            _MAIN,
            str(self.server_properties),
        ]

    def probe(self, timeout_s: float) -> str:
        return probe_kafka(self.address, timeout_s)


def probe_kafka(bootstrap_servers: str, timeout_s: float) -> str:
    """Ask Kafka at `bootstrap_servers` for its metadata; return 'cluster <id>, <n> broker(s)'.

    Raises `NotAnsweringError` if no broker answers within `timeout_s`.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "client.id": "affresco-infra-probe",
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        # Connection-refused noise while a broker starts belongs in our log, not on stderr.
        "logger": logging.getLogger(f"{__name__}.librdkafka"),
    }
    admin = AdminClient(config)  # keep a reference while waiting on its answer
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        msg = f"Kafka at {bootstrap_servers} did not answer a metadata request within {timeout_s:.0f} s: {exc}"
        raise NotAnsweringError(msg) from exc
    if not metadata.brokers:
        msg = f"Kafka at {bootstrap_servers} answered, but with no broker in its metadata"
        raise NotAnsweringError(msg)
    return f"cluster {metadata.cluster_id}, {len(metadata.brokers)} broker(s)"


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64 without padding, as Kafka writes them."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka avoids these too: they read as command-line flags
            return cluster_id


def _meta_cluster_id(meta_properties: Path) -> str:
    try:
        text = meta_properties.read_text(encoding="utf-8")
    except OSError:
        return ""
    match = re.search(r"^cluster\.id=(\S+)", text, re.MULTILINE)
    return match.group(1) if match else ""
