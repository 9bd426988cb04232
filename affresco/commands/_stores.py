"""Opening the configured online store from the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from affresco.settings import PlatformSettings
    from state.online import OnlineStore

__all__ = ["StoreKind", "open_online_store"]

StoreKind = Literal["rocksdb", "cassandra"]


def open_online_store(settings: PlatformSettings, kind: str | None = None, *, read_only: bool = False) -> OnlineStore:
    """The online store; RocksDB opens read-only when another process (a processor) may own it."""
    from state.online import open_store

    chosen = kind or settings.online_store
    if chosen == "rocksdb":
        options: dict[str, object] = {"path": settings.rocksdb_path}
        if read_only:
            options["access"] = "read_only"
        return open_store("rocksdb", **options)
    return open_store("cassandra")
