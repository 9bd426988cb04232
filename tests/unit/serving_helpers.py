"""The prediction service on a real HTTP server (uvicorn, a thread of the test process), for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from processors.engine import GroupState, SourceRow
from processors.records import online_record
from serving.catalog import Catalog, Served
from serving.model import LoadedModel
from state.online.base import OnlineStore
from streams.settings import KafkaSettings

__all__ = ["catalog_serving", "fold_before", "running"]


def catalog_serving(model: LoadedModel, kafka: KafkaSettings) -> Catalog:
    """A catalog serving `model` as eta@prod (as if the registry said so)."""
    catalog = Catalog(kafka, lambda refs: {})
    catalog.aliases[(model.name, "prod")] = Served(model, "prod", "deployed", 0)
    catalog.versions[(model.name, model.version)] = model
    catalog.refreshed = True
    return catalog


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve `app` on a free loopback port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def fold_before(model: LoadedModel, events: Sequence[Any], store: OnlineStore, until: int) -> None:
    """The processor's work for a test: every event before `until` folded into the model's groups, upserted."""
    for use in model.groups:
        rows = [SourceRow(dict(e.__dict__), 0, k) for k, e in enumerate(events)
                if e.type_name() == use.group.event_type and e.event_time < until]  # fmt: skip
        result = use.engine.apply(GroupState(partitions=1), rows)
        store.upsert([online_record(use.group, u) for u in result.updates])
