"""Champion/challenger: the model deployed under the `shadow` alias, scored on the champion's
requests off the response path and logged as predictions of its own.

A request answered by the champion (the default alias, `prod`) hands its rows here; one thread
reads the shadow's features (it may use other groups than the champion), scores them through
the same core, and emits them with `alias="shadow"` and the same join keys, so monitoring pairs
both with the same outcomes. The queue is bounded: when the shadow cannot keep up, requests are
dropped from shadowing (counted) rather than slowing the champion down.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from serving.core import ScoredRow, online_features, score
from serving.model import LoadedModel
from state.exceptions import StateError
from state.online.base import OnlineStore

__all__ = ["ShadowScorer"]

log = logging.getLogger(__name__)

Emit = Callable[[LoadedModel, list[dict[str, Any]], list[ScoredRow]], None]


class ShadowScorer:
    def __init__(self, store: OnlineStore, emit: Emit, *, max_queued: int = 1000) -> None:
        self.store, self.emit = store, emit
        self._queue: queue.Queue[tuple[LoadedModel, list[dict[str, Any]], int] | None] = queue.Queue(max_queued)
        self.scored = self.dropped = self.failed = 0  # rows
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, model: LoadedModel, rows: list[dict[str, Any]], now_ms: int) -> None:
        """Score `rows` with `model` later; returns at once (the rows are dropped if the queue is full)."""
        try:
            self._queue.put_nowait((model, rows, now_ms))
        except queue.Full:
            self.dropped += len(rows)

    def close(self, timeout: float = 5.0) -> None:
        """Score what was queued (within `timeout`), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return  # still busy after `timeout`: a daemon thread, it ends with the process
        self._thread.join(timeout)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            model, rows, now_ms = job
            try:
                scored = score(model, rows, online_features(model, rows, self.store, now_ms=now_ms))
            except StateError as exc:  # the store failed: the champion answered; the shadow skips these
                self.failed += len(rows)
                log.warning("shadow %s v%s: %d row(s) not scored: %s", model.name, model.version, len(rows), exc)
                continue
            except Exception:  # a bug must not stop shadowing for every later request
                self.failed += len(rows)
                log.exception("shadow %s v%s: %d row(s) not scored", model.name, model.version, len(rows))
                continue
            self.scored += len(rows)
            self.emit(model, rows, scored)
