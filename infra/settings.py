"""Settings of the local Kafka, Cassandra and Flink servers, read from `AFFRESCO_INFRA_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_JAVA_HOME", "InfraSettings"]

DEFAULT_JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")

_VERSION = r"^\d+\.\d+\.\d+$"
_HEAP = r"^[1-9]\d*[kKmMgG]?$"
_FLINK_MEMORY = r"^[1-9]\d*[mg]$"


class InfraSettings(BaseSettings):
    """Where the local servers keep their files, which versions they run and on which ports.

    Every field reads `AFFRESCO_INFRA_<FIELD>`; the data directory also reads `AFFRESCO_DATA_DIR`.

    >>> InfraSettings(data_dir="/tmp/x", kafka_port=19092).kafka_bootstrap
    '127.0.0.1:19092'
    """

    model_config = SettingsConfigDict(env_prefix="AFFRESCO_INFRA_", frozen=True, extra="forbid", populate_by_name=True)

    data_dir: Path = Field(
        Path(".affresco"),
        validation_alias=AliasChoices("AFFRESCO_DATA_DIR", "AFFRESCO_INFRA_DATA_DIR"),
        description="Jars, configs, data, logs and pid files live here (made absolute when loaded).",
    )
    java_home: Path = Field(DEFAULT_JAVA_HOME, description="A Java 17 installation; its bin/java runs both servers.")
    maven: str = Field("mvn", min_length=1, description="The Maven executable that fetches the server jars.")

    kafka_version: str = Field("4.1.1", pattern=_VERSION)
    kafka_log4j_version: str = Field("2.24.3", pattern=_VERSION, description="log4j2 binding added to Kafka.")
    cassandra_version: str = Field("5.0.6", pattern=_VERSION)
    flink_version: str = Field(
        "2.2.1", pattern=_VERSION, description="The apache-flink version installed in `flink_venv` (checked at start)."
    )
    flink_kafka_connector_version: str = Field(
        "5.0.0-2.2",
        pattern=r"^\d+\.\d+\.\d+-\d+\.\d+$",
        description="org.apache.flink:flink-sql-connector-kafka, fetched into the Flink libs folder for jobs.",
    )
    flink_venv: Path = Field(
        Path(".venv-flink"),
        description="The separate venv with apache-flink (`make flink-venv`): FLINK_HOME and the Python workers.",
    )

    host: str = Field("127.0.0.1", min_length=1, description="The address both servers listen on.")
    kafka_port: int = Field(9092, gt=0, lt=65536)
    kafka_controller_port: int = Field(9093, gt=0, lt=65536)
    cassandra_port: int = Field(9042, gt=0, lt=65536)
    cassandra_storage_port: int = Field(7000, gt=0, lt=65536)
    flink_rest_port: int = Field(8081, gt=0, lt=65536, description="Flink's REST API and web UI.")
    flink_rpc_port: int = Field(6123, gt=0, lt=65536, description="The JobManager's RPC port.")
    flink_blob_port: int = Field(6124, gt=0, lt=65536, description="The JobManager's blob server.")

    flink_taskmanagers: int = Field(2, ge=1, le=16, description="TaskManager processes of the Flink cluster.")
    flink_task_slots: int = Field(2, ge=1, le=64, description="Task slots per TaskManager.")
    flink_parallelism: int = Field(2, ge=1, le=1024, description="`parallelism.default` of the Flink cluster.")
    flink_jobmanager_memory: str = Field(
        "1024m", pattern=_FLINK_MEMORY, description="`jobmanager.memory.process.size`."
    )
    flink_taskmanager_memory: str = Field(
        "1536m", pattern=_FLINK_MEMORY, description="`taskmanager.memory.process.size`, per TaskManager."
    )

    kafka_heap: str = Field("512m", pattern=_HEAP, description="JVM heap of the broker (-Xms/-Xmx).")
    cassandra_heap: str = Field("1g", pattern=_HEAP, description="JVM heap of Cassandra (-Xms/-Xmx).")
    cassandra_unsafe_system: bool = Field(
        True, description="Skip fsync of Cassandra's system tables: faster start, for local use and tests only."
    )

    kafka_start_timeout_s: float = Field(60.0, gt=0)
    cassandra_start_timeout_s: float = Field(120.0, gt=0)
    flink_start_timeout_s: float = Field(
        120.0, gt=0, description="Until the REST API reports every TaskManager registered."
    )
    stop_timeout_s: float = Field(30.0, gt=0, description="Wait this long after SIGTERM before SIGKILL.")

    @field_validator("data_dir")
    @classmethod
    def _resolve_data_dir(cls, value: Path) -> Path:
        # Absolute paths go into configs and command lines; `down` recognizes our processes by them.
        return value.expanduser().resolve()

    @field_validator("java_home", "flink_venv")
    @classmethod
    def _absolute_java_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _distinct_ports(self) -> Self:
        ports = {
            "kafka_port": self.kafka_port,
            "kafka_controller_port": self.kafka_controller_port,
            "cassandra_port": self.cassandra_port,
            "cassandra_storage_port": self.cassandra_storage_port,
            "flink_rest_port": self.flink_rest_port,
            "flink_rpc_port": self.flink_rpc_port,
            "flink_blob_port": self.flink_blob_port,
        }
        seen: dict[int, str] = {}
        clashes = []
        for name, port in ports.items():
            if port in seen:
                clashes.append(f"{seen[port]} and {name} are both {port}")
            seen.setdefault(port, name)
        if clashes:
            msg = f"infra settings: every server port must be different, but {'; '.join(clashes)}"
            raise ValueError(msg)
        return self

    @property
    def java(self) -> Path:
        """The java binary that runs the servers (pinned, never taken from PATH)."""
        return self.java_home / "bin" / "java"

    @property
    def kafka_bootstrap(self) -> str:
        """`host:port` for Kafka clients."""
        return f"{self.host}:{self.kafka_port}"
