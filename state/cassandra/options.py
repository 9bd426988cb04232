"""Cassandra connection options, read from `AFFRESCO_CASSANDRA_*` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CassandraSettings"]


class CassandraSettings(BaseSettings):
    """Contact points, keyspace and replication of the Cassandra online store."""

    model_config = SettingsConfigDict(env_prefix="AFFRESCO_CASSANDRA_", frozen=True, extra="forbid")

    contact_points: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    port: int = Field(9042, gt=0, lt=65536)
    keyspace: str = Field("affresco", pattern=r"^[a-zA-Z][a-zA-Z0-9_]{0,47}$")
    replication_class: str = "SimpleStrategy"
    replication_factor: int = Field(1, ge=1)
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 10.0

    def replication(self) -> dict[str, str | int]:
        """The replication map for `CREATE KEYSPACE`."""
        return {"class": self.replication_class, "replication_factor": self.replication_factor}
