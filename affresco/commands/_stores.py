"""Opening the configured online store from the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from affresco.settings import PlatformSettings
    from state.online import OnlineStore

__all__ = ["StoreKind", "open_online_store"]

StoreKind = Literal["rocksdb", "cassandra"]


def open_online_store(
    settings: PlatformSettings,
    kind: str | None = None,
    *,
    read_only: bool = False,
    follow_ms: int | None = None,
) -> OnlineStore:
    """The online store; RocksDB opens read-only when another process (a processor) may own it.

    With `follow_ms`, RocksDB opens as a secondary instance that follows its owner's writes: the
    caller refreshes it every `follow_ms` (`serving.freshness`), and a read catches up itself
    only if that has not happened for ten times as long.
    """
    from state.online import open_store

    chosen = kind or settings.online_store
    if chosen == "rocksdb":
        options: dict[str, object] = {"path": settings.rocksdb_path}
        if follow_ms is not None:
            options |= {"access": "secondary", "catch_up_interval_ms": 10 * follow_ms}
        elif read_only:
            options["access"] = "read_only"
        return open_store("rocksdb", **options)
    return open_store("cassandra")
