"""Cassandra connection options, read from `AFFRESCO_CASSANDRA_*` environment variables."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
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
    # The driver's default waits up to 600 s between attempts to reach a node that went down, so a
    # service could stay degraded for minutes after the node is back; an attempt is one TCP connect.
    reconnect_base_delay_s: float = Field(
        0.2, gt=0, description="First wait before reconnecting to a node that went down; doubles per attempt."
    )
    reconnect_max_delay_s: float = Field(2.0, gt=0, description="Longest wait between reconnection attempts.")

    @model_validator(mode="after")
    def _check_reconnect_delays(self) -> Self:
        if self.reconnect_max_delay_s < self.reconnect_base_delay_s:
            msg = (
                f"reconnect_max_delay_s ({self.reconnect_max_delay_s:g}) must be at least "
                f"reconnect_base_delay_s ({self.reconnect_base_delay_s:g})"
            )
            raise ValueError(msg)
        return self

    def replication(self) -> dict[str, str | int]:
        """The replication map for `CREATE KEYSPACE`."""
        return {"class": self.replication_class, "replication_factor": self.replication_factor}
