"""Keeping a store that follows another process's writes (a RocksDB secondary) fresh.

The processor owns the embedded store; the service reads it as a secondary instance, which sees
the owner's writes only after a catch-up. A catch-up costs ~1-3 ms while the owner writes, so it
runs here, on a thread, every `interval_s` — not on a request's path. That interval is what the
service adds to the features' freshness. Stores that are always current (Cassandra, a RocksDB
owner) need no thread.
"""

from __future__ import annotations

import logging
import threading

from state.exceptions import StateError
from state.online.base import OnlineStore

__all__ = ["follow_store"]

logger = logging.getLogger(__name__)


def follow_store(store: OnlineStore, interval_s: float, stop: threading.Event) -> threading.Thread | None:
    """Refresh `store` every `interval_s` until `stop` is set; None when the store needs no refreshing."""
    if not store.follows_owner:
        return None

    def run() -> None:
        failing = False
        while not stop.wait(interval_s):
            try:
                store.refresh()
                if failing:
                    logger.warning("caught up with the online store's owner again")
                failing = False
            except StateError as exc:  # reads go on from what was caught up; tried again next turn
                if not failing:
                    logger.warning("could not catch up with the online store's owner: %s", exc)
                failing = True

    thread = threading.Thread(target=run, name="online-store-follow", daemon=True)
    thread.start()
    return thread
