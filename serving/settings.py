"""Settings of the prediction service, from `AFFRESCO_SERVING_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServingSettings"]


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFFRESCO_SERVING_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="Server processes on the port (each loads every model).")
    definitions: Path | None = Field(
        None, description="Feature groups from this YAML file or directory, not the registry."
    )
    token: SecretStr | None = Field(None, description="Bearer token required on every route but health; off if unset.")
    max_rows: int = Field(1000, ge=1, le=100_000, description="Rows one predict request may carry.")
    default_alias: str = Field("prod", description="The alias served when a request names none.")
    reload_interval_s: float = Field(2.0, gt=0, le=3600, description="How often the model topic is read for changes.")
    store_follow_ms: int = Field(
        100,
        ge=1,
        le=60_000,
        description="RocksDB: how often the service catches up with the processor's writes (added to freshness).",
    )
    store_reads: Literal["auto", "inline", "thread"] = Field(
        "auto",
        description="Where store reads run: on a thread, within the time budget, or inline on the event loop "
        "(no budget; auto: inline for an embedded store, RocksDB).",
    )
    store_budget_ms: int = Field(50, ge=1, le=60_000, description="The online store's time budget per request.")
    on_store_failure: Literal["missing", "unavailable"] = Field(
        "missing",
        description="When the store fails or overruns its budget: answer with every feature missing (and say so), "
        "or refuse with 503 and the reason.",
    )
