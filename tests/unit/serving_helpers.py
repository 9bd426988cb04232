"""The prediction service on a real HTTP server (uvicorn, a thread of the test process), for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from serving.catalog import Catalog, Served
from serving.model import LoadedModel
from streams.settings import KafkaSettings

__all__ = ["catalog_serving", "running"]


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
