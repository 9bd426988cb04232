"""`affresco serve`: the HTTP prediction service, following the model registry topic."""

from __future__ import annotations

import threading
from pathlib import Path

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings

__all__ = ["serve"]


def serve(
    host: str | None = typer.Option(None, "--host", help="Address to listen on.", show_default="127.0.0.1"),
    port: int | None = typer.Option(None, "--port", help="Port to listen on.", show_default="8080"),
    store: str | None = typer.Option(None, "--store", help="rocksdb or cassandra.", envvar="AFFRESCO_ONLINE_STORE"),
    definitions: Path | None = typer.Option(
        None, "--definitions", "-d", help="Feature groups from YAML, not the registry."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Serve predictions over HTTP (OpenAPI at /docs): models follow affresco.models, features the online store."""
    import uvicorn

    from affresco.commands._stores import open_online_store
    from affresco.settings import PlatformSettings
    from processors.definitions import FeatureGroup
    from serving.app import create_app
    from serving.catalog import Catalog
    from serving.emitter import PredictionEmitter
    from serving.freshness import follow_store
    from serving.settings import ServingSettings
    from state.exceptions import StateError

    if store not in (None, "rocksdb", "cassandra"):
        msg = f"expected rocksdb or cassandra, got {store!r}"
        raise typer.BadParameter(msg, param_hint="--store")
    settings = ServingSettings()
    settings = settings.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    kafka = kafka_settings(bootstrap_servers)

    def groups(refs: list[str]) -> dict[str, FeatureGroup]:
        if definitions is not None:
            from processors.definitions import load_groups

            wanted = set(refs)
            return {g.name: g for g in load_groups([definitions]) if g.ref in wanted}
        from processors.registry import FeatureRegistry

        return {g.name: g for g, _ in FeatureRegistry(kafka).resolve(refs)}

    catalog = Catalog(kafka, groups)
    catalog.refresh()
    stop = threading.Event()
    catalog.follow(settings.reload_interval_s, stop)
    emitter = PredictionEmitter(kafka)
    try:
        with open_online_store(PlatformSettings(), store, follow_ms=settings.store_follow_ms) as online:
            follow_store(online, settings.store_follow_ms / 1000, stop)
            app = create_app(catalog, online, emitter, settings)
            err_console.print(f"serving {catalog.names() or 'no model yet'} on http://{settings.host}:{settings.port}",
                              highlight=False)  # fmt: skip
            uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    except StateError as exc:
        fail(str(exc))
    finally:
        stop.set()
        emitter.close()
