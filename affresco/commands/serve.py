"""`affresco serve`: the HTTP prediction service, following the model registry topic.

One process, or `--workers N` processes on one port (uvicorn's workers; each loads the models,
opens the store and emits its own events, and `/metrics` adds up all of them). What a worker
needs travels to it in `AFFRESCO_*` variables, so it builds the same service (`worker_app`).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from processors.definitions import FeatureGroup
    from serving.catalog import Catalog
    from serving.settings import ServingSettings
    from streams.settings import KafkaSettings

__all__ = ["serve", "worker_app"]


def serve(
    host: str | None = typer.Option(None, "--host", help="Address to listen on.", show_default="127.0.0.1"),
    port: int | None = typer.Option(None, "--port", help="Port to listen on.", show_default="8080"),
    store: str | None = typer.Option(None, "--store", help="rocksdb or cassandra.", envvar="AFFRESCO_ONLINE_STORE"),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64, help="Server processes on the port.", show_default="1"
    ),
    definitions: Path | None = typer.Option(
        None, "--definitions", "-d", help="Feature groups from YAML, not the registry."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Serve predictions over HTTP (OpenAPI at /docs): models follow affresco.models, features the online store."""
    import uvicorn

    from affresco.commands._stores import open_online_store
    from affresco.settings import PlatformSettings
    from serving.settings import ServingSettings
    from state.exceptions import StateError

    if store not in (None, "rocksdb", "cassandra"):
        msg = f"expected rocksdb or cassandra, got {store!r}"
        raise typer.BadParameter(msg, param_hint="--store")
    given = {"host": host, "port": port, "workers": workers, "definitions": definitions}
    settings = ServingSettings().model_copy(update={k: v for k, v in given.items() if v is not None})
    kafka = kafka_settings(bootstrap_servers)
    # Checked once here, where an error can stop the command with its message (a worker that
    # failed to start would only be restarted by uvicorn, again and again).
    catalog = _catalog(kafka, settings.definitions)
    try:
        with open_online_store(PlatformSettings(), store, follow_ms=settings.store_follow_ms):
            pass
    except StateError as exc:
        fail(str(exc))
    where = f"http://{settings.host}:{settings.port}"
    processes = f" ({settings.workers} workers)" if settings.workers > 1 else ""
    err_console.print(f"serving {catalog.names() or 'no model yet'} on {where}{processes}", highlight=False)
    if settings.workers == 1:
        uvicorn.run(_build(catalog, store, settings, kafka), host=settings.host, port=settings.port,
                    log_level="warning")  # fmt: skip
        return
    metrics_dir = Path(tempfile.mkdtemp(prefix="affresco-serve-metrics-"))
    os.environ |= {
        "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        **({"AFFRESCO_ONLINE_STORE": store} if store else {}),
        **({"AFFRESCO_SERVING_DEFINITIONS": str(settings.definitions)} if settings.definitions else {}),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    try:
        uvicorn.run("affresco.commands.serve:worker_app", factory=True, workers=settings.workers,
                    host=settings.host, port=settings.port, log_level="warning")  # fmt: skip
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_app() -> FastAPI:
    """One worker's service, from the environment `serve` set (uvicorn's app factory)."""
    from serving.settings import ServingSettings
    from streams.settings import KafkaSettings

    settings, kafka = ServingSettings(), KafkaSettings()
    return _build(_catalog(kafka, settings.definitions), os.environ.get("AFFRESCO_ONLINE_STORE"), settings, kafka)


def _build(catalog: Catalog, store: str | None, settings: ServingSettings, kafka: KafkaSettings) -> FastAPI:
    """The service on its parts: the catalog following the registry, the store (following the
    processor where it must), the emitter; closed when the server stops."""
    from affresco.commands._stores import open_online_store
    from affresco.settings import PlatformSettings
    from serving.app import create_app
    from serving.emitter import PredictionEmitter
    from serving.freshness import follow_store

    stop = threading.Event()
    catalog.follow(settings.reload_interval_s, stop)
    online = open_online_store(PlatformSettings(), store, follow_ms=settings.store_follow_ms)
    follow_store(online, settings.store_follow_ms / 1000, stop)
    emitter = PredictionEmitter(kafka)

    def close() -> None:
        stop.set()
        emitter.close()
        online.close()

    app = create_app(catalog, online, emitter, settings, on_close=close)
    # A request allocates a few hundred objects; with the default threshold (700) the collector
    # ran every few requests and its pauses made the p99 (measured: p99 at 200 req/s 17-35 ms,
    # 5-10 ms with this). What start-up loaded (models, groups) is frozen out of its scans.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    return app


def _catalog(kafka: KafkaSettings, definitions: Path | None) -> Catalog:
    from serving.catalog import Catalog

    def groups(refs: list[str]) -> dict[str, FeatureGroup]:
        if definitions is not None:
            from processors.definitions import load_groups

            wanted = set(refs)
            return {g.name: g for g in load_groups([definitions]) if g.ref in wanted}
        from processors.registry import FeatureRegistry

        return {g.name: g for g, _ in FeatureRegistry(kafka).resolve(refs)}

    catalog = Catalog(kafka, groups)
    catalog.refresh()
    return catalog
