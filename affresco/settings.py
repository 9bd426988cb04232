"""Platform settings, read from `AFFRESCO_*` environment variables (validated when loaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RECOVERY_FORMAT", "PlatformSettings"]

#: The layout of the stream processor's recovery snapshots (2: per-partition event-time maxima,
#: group states with the open history).
RECOVERY_FORMAT = 2


class PlatformSettings(BaseSettings):
    """Where affresco keeps its local data, and which online store it uses.

    `AFFRESCO_DATA_DIR` (default `./.affresco`) holds the embedded online store, the Parquet
    offline store and raw archive, and the processors' recovery state.
    """

    model_config = SettingsConfigDict(env_prefix="AFFRESCO_", frozen=True, extra="ignore")

    data_dir: Path = Field(Path(".affresco"), validation_alias=AliasChoices("AFFRESCO_DATA_DIR", "data_dir"))
    online_store: Literal["rocksdb", "cassandra"] = "rocksdb"
    offline_root: Path | None = Field(None, description="Parquet root; default <data_dir>/offline.")
    features_dir: Path = Field(Path("processors/features"), description="Default feature definitions directory.")
    models_root: str | None = Field(
        None,
        description="Where model bundles are written: a path or a pyarrow.fs URI (s3://…); default <data_dir>/models.",
    )

    @property
    def offline(self) -> Path:
        return (self.offline_root or self.data_dir / "offline").absolute()

    @property
    def models(self) -> str:
        return self.models_root or str((self.data_dir / "models").absolute())

    @property
    def training_sets(self) -> Path:
        return (self.data_dir / "training").absolute()

    @property
    def rocksdb_path(self) -> Path:
        return (self.data_dir / "online" / "rocksdb").absolute()

    def recovery_dir(self, run_name: str) -> Path:
        # Versioned by the layout of the processor's snapshots: a store written by an older layout is
        # left alone (the run starts over; its writes are idempotent) instead of being misread.
        return (self.data_dir / "processors" / run_name / f"recovery-v{RECOVERY_FORMAT}").absolute()
