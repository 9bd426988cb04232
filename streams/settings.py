"""Kafka client settings, read from `AFFRESCO_KAFKA_*` environment variables."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["KafkaSettings"]


class KafkaSettings(BaseSettings):
    """Where Kafka is and how affresco names its own topics.

    >>> KafkaSettings(bootstrap_servers="broker1:9092,broker2:9092").bootstrap_servers
    'broker1:9092,broker2:9092'
    """

    model_config = SettingsConfigDict(env_prefix="AFFRESCO_KAFKA_", frozen=True, extra="forbid")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    client_id: str = "affresco"
    topic_prefix: str = Field("affresco", description="Prefix of affresco's own topics (features, models, dlq...).")
    max_message_bytes: int = Field(1_000_000, gt=0, description="Largest event value accepted; larger go to the DLQ.")
    max_future_ms: int = Field(
        3_600_000,
        ge=0,
        description="Events whose event_time is further ahead of the wall clock are rejected (future_event); "
        "the default is the broker's log.message.timestamp.after.max.ms, beyond which it refuses the record.",
    )
    linger_ms: int = Field(5, ge=0)
    compression: str = "lz4"

    def client_config(self) -> dict[str, Any]:
        """The librdkafka settings every affresco client shares.

        librdkafka's own log lines go to the `streams.kafka` logger instead of stderr, so a CLI's
        output stays readable; configure logging to see them.
        """
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "logger": logging.getLogger("streams.kafka"),
        }
