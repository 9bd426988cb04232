"""The HTTP prediction service (FastAPI): predict, the models served, health, readiness, metrics.

Scoring is `serving.core.predict_rows` — the code batch prediction and training-set parity are
tested against. Requests are validated against the model's own request fields (from its
manifest) before anything is read; a prediction event is queued per row and never waited for.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import BaseModel, Field, ValidationError

from serving.catalog import Catalog
from serving.core import (
    FeatureFrame,
    ScoredRow,
    features_from_records,
    missing_features,
    online_features,
    online_keys,
    score,
)
from serving.emitter import PredictionEmitter
from serving.model import LoadedModel
from serving.settings import ServingSettings
from serving.shadow import ShadowScorer
from state.exceptions import StateError
from state.online.base import OnlineStore
from streams.events.platform import Prediction

__all__ = ["SHADOW", "create_app"]

SHADOW = "shadow"  # the challenger's alias: scored on the champion's requests, off the response path

_KINDS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


class PredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1, description="Entity keys and request fields, one object per row.")


class PredictedRow(BaseModel):
    prediction_id: str
    prediction: float
    model: str
    version: int
    partition: str = Field(description="The partition node whose model scored the row.")
    node: str = Field(description="The deepest partition node on the row's path.")
    features: dict[str, Any]
    missing: list[str]
    state_ahead_of_request: list[str] = Field(
        description="Groups whose stored state already held events at or after the request time."
    )


class PredictResponse(BaseModel):
    rows: list[PredictedRow]
    degraded: str | None = Field(None, description="Why features are missing when the online store failed or was slow.")


class _Metrics:
    """The service's Prometheus metrics. With several worker processes (`PROMETHEUS_MULTIPROC_DIR`
    set by `affresco serve --workers`), each writes its values to that directory and `/metrics`
    adds up every worker's (prometheus_client's multiprocess mode)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.exposed = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed)
        fast = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
        self.latency = Histogram("affresco_predict_seconds", "Predict request latency.", ["model"],
                                 registry=self.registry, buckets=fast)  # fmt: skip
        self.store_latency = Histogram("affresco_online_store_seconds", "Online-store read latency per request.",
                                       registry=self.registry, buckets=fast)  # fmt: skip
        self.predictions = Counter("affresco_predictions_total", "Rows scored.", ["model", "version", "partition"],
                                   registry=self.registry)  # fmt: skip
        self.fallbacks = Counter("affresco_prediction_fallbacks_total", "Rows scored by an ancestor of their node.",
                                 ["model", "node"], registry=self.registry)  # fmt: skip
        self.missing = Counter("affresco_missing_features_total", "Features missing at prediction time.",
                               ["model", "feature"], registry=self.registry)  # fmt: skip
        self.errors = Counter("affresco_predict_errors_total", "Refused or failed requests.", ["kind"],
                              registry=self.registry)  # fmt: skip
        self.emit_failed = Gauge("affresco_prediction_events_failed", "Prediction events that could not be emitted.",
                                 registry=self.registry, multiprocess_mode="livesum")  # fmt: skip
        self.emit_pending = Gauge("affresco_prediction_events_pending",
                                  "Prediction events waiting for their topic to be created (Kafka unreachable).",
                                  registry=self.registry, multiprocess_mode="livesum")  # fmt: skip


def create_app(
    catalog: Catalog,
    store: OnlineStore,
    emitter: PredictionEmitter,
    settings: ServingSettings,
    *,
    on_close: Callable[[], None] | None = None,
) -> FastAPI:
    """The service on these parts; `on_close` runs when the server shuts down (closing them)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            shadows.close()
            if on_close is not None:
                on_close()

    app = FastAPI(title="affresco prediction service", version="1", lifespan=lifespan,
                  description="Predictions from partitioned ONNX models, features from the online store.")  # fmt: skip
    metrics = _Metrics()
    # A remote store (Cassandra) is read asynchronously within the budget: a hung store never
    # hangs a request, and no thread waits on it. An embedded store (RocksDB) is read inline on
    # the event loop: a read is ~10 µs of local I/O, and a hop to a thread (and the fight for the
    # GIL there) cost more than the read itself — half the throughput when measured. Its
    # failures still degrade; its time is not budgeted.
    budget_s = settings.store_budget_ms / 1000

    def emit_shadow(challenger: LoadedModel, rows: list[dict[str, Any]], scored: list[ScoredRow]) -> None:
        ids = [uuid.uuid4().hex for _ in scored]
        emitter.submit(challenger.name, len(rows), lambda: _events(challenger, rows, scored, ids, None, metrics,
                                                                   SHADOW))  # fmt: skip

    shadows = ShadowScorer(store, emit_shadow)
    inline = settings.store_reads == "inline" or (settings.store_reads == "auto" and store.embedded)

    async def _features(model: LoadedModel, rows: list[dict[str, Any]], now: int) -> tuple[FeatureFrame, str | None]:
        started = time.perf_counter()
        try:
            if inline:
                frame = online_features(model, rows, store, now_ms=now)
            else:  # the event loop serves other requests while the store answers, within the budget
                keys, as_of = online_keys(model, rows, now_ms=now)
                reading = store.get_many_async(keys, now_ms=as_of)
                records = await asyncio.wait_for(reading, timeout=budget_s) if keys else {}
                frame = features_from_records(model, rows, records, now_ms=now)
            metrics.store_latency.observe(time.perf_counter() - started)
            return frame, None
        except TimeoutError:
            reason = f"the online store did not answer within {settings.store_budget_ms} ms"
        except StateError as exc:
            reason = f"the online store failed: {exc}"
        metrics.errors.labels("online_store").inc()
        if settings.on_store_failure == "unavailable":
            raise HTTPException(503, reason)
        return missing_features(model, rows, now_ms=now), f"{reason}; every feature is missing"

    async def authorized(authorization: str | None = Header(None)) -> None:  # async: no thread hop
        if settings.token is None:
            return
        if authorization != f"Bearer {settings.token.get_secret_value()}":
            metrics.errors.labels("auth").inc()
            raise HTTPException(401 if authorization is None else 403, "a valid bearer token is required")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        body = {"worker": os.getpid(), "models_loaded": catalog.refreshed, "models": catalog.names(),
                "load_errors": catalog.errors,
                "prediction_events_queued": emitter.queued, "prediction_events_pending": emitter.pending,
                "prediction_events_failed": emitter.failed,
                "shadow_rows": {"scored": shadows.scored, "dropped": shadows.dropped,
                                "failed": shadows.failed}}  # fmt: skip
        return JSONResponse(body, status_code=200 if catalog.refreshed else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        metrics.emit_failed.set(emitter.failed)
        metrics.emit_pending.set(emitter.pending)
        return PlainTextResponse(generate_latest(metrics.exposed).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    def models() -> dict[str, Any]:
        return {"served": catalog.describe(), "load_errors": catalog.errors}

    request_schema = PredictRequest.model_json_schema()
    parameters = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The model, optionally with its alias or version: eta, eta@shadow, eta:3."},
        {"name": "x-model-alias", "in": "header", "required": False, "schema": {"type": "string"},
         "description": f"The alias to serve (default {settings.default_alias!r})."},
        {"name": "x-model-version", "in": "header", "required": False, "schema": {"type": "integer"},
         "description": "A version to serve instead of an alias."},
    ]  # fmt: skip

    # Its parameters are read from the request here rather than declared: FastAPI's per-request
    # resolution of declared parameters cost a quarter of the handler's time when measured. They
    # are documented in the OpenAPI spec all the same.
    @app.post(
        "/v1/models/{name}/predict",
        response_model=PredictResponse,
        responses={422: {"description": "An invalid request: where, what was expected and what arrived."},
                   404: {"description": "No such model, alias or version; the names served."}},
        openapi_extra={"parameters": parameters,
                       "requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}}},
    )  # fmt: skip
    async def predict(request: Request) -> Response:
        # The body is parsed and checked here, not by FastAPI's generic machinery: against the
        # model's own request fields, at a fraction of the cost (see the README's serving figures).
        started = time.perf_counter()
        headers = request.headers
        await authorized(headers.get("authorization"))
        version = _version_header(headers.get("x-model-version"), metrics)
        model, alias = _resolve(catalog, request.path_params["name"], headers.get("x-model-alias"), version,
                                settings.default_alias, metrics)  # fmt: skip
        rows = _rows(await request.body(), settings.max_rows, metrics)
        problems = [p for i, row in enumerate(rows) for p in _row_problems(model, row, i)]
        if problems:
            metrics.errors.labels("invalid_row").inc()
            raise HTTPException(422, problems)
        now = int(time.time() * 1000)
        frame, degraded = await _features(model, rows, now)
        scored = score(model, rows, frame)
        ids = [uuid.uuid4().hex for _ in scored]
        latency_ms = (time.perf_counter() - started) * 1000
        emitter.submit(model.name, len(rows), lambda: _events(model, rows, scored, ids, latency_ms, metrics, alias))
        if alias == settings.default_alias:  # the champion's request: its challenger scores it too, later
            challenger = catalog.lookup(model.name, SHADOW, None)
            if challenger is not None and challenger.version != model.version:
                shadows.submit(challenger, rows, now)
        for s in scored:
            metrics.predictions.labels(model.name, str(model.version), s.served_by).inc()
            if s.served_by != s.node:
                metrics.fallbacks.labels(model.name, s.node).inc()
            for feature in s.missing:
                metrics.missing.labels(model.name, feature).inc()
        body = {"degraded": degraded, "rows": [
            {"prediction_id": i, "prediction": s.prediction, "model": model.name, "version": model.version,
             "partition": s.served_by, "node": s.node, "features": s.features, "missing": s.missing,
             "state_ahead_of_request": s.ahead}
            for i, s in zip(ids, scored, strict=True)
        ]}  # fmt: skip
        content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        metrics.latency.labels(model.name).observe(time.perf_counter() - started)
        return Response(content, media_type="application/json")

    return app


def _rows(body: bytes, max_rows: int, metrics: _Metrics) -> list[dict[str, Any]]:
    """The request's rows: a JSON object with a non-empty list `rows` of objects, at most `max_rows`."""

    def refuse(loc: list[str | int], msg: str, arrived: Any, kind: str = "invalid_body") -> NoReturn:
        metrics.errors.labels(kind).inc()
        raise HTTPException(422, [{"loc": ["body", *loc], "msg": msg, "input": arrived}])

    try:
        doc = orjson.loads(body)  # NaN and Infinity are not JSON: refused here
    except orjson.JSONDecodeError as exc:
        refuse([], f"invalid JSON: {exc}", body[:100].decode(errors="replace"))
    if not isinstance(doc, dict):
        refuse([], "expected an object with `rows`", _shown(doc))
    rows = doc.get("rows")
    if not isinstance(rows, list) or not rows:
        refuse(["rows"], "expected a non-empty list of objects", _shown(rows))
    if len(rows) > max_rows:
        refuse(["rows"], f"at most {max_rows} rows per request", len(rows), "too_many_rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            refuse(["rows", i], "expected an object", _shown(row))
    return rows


def _version_header(value: str | None, metrics: _Metrics) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        metrics.errors.labels("invalid_header").inc()
        detail = [{"loc": ["header", "x-model-version"], "msg": "expected an integer", "input": value[:100]}]
        raise HTTPException(422, detail) from None


def _shown(value: Any) -> Any:
    """A refused value as echoed back: short."""
    return value if isinstance(value, int | float | bool | None) else str(value)[:100]


def _resolve(
    catalog: Catalog, name: str, alias: str | None, version: int | None, default_alias: str, metrics: _Metrics
) -> tuple[LoadedModel, str | None]:
    """The model a request names, and the alias it was named by (None: an explicit version)."""
    # The path may name the alias or version too: eta@shadow, eta:3.
    if ":" in name:
        name, _, text = name.partition(":")
        version = int(text.removeprefix("v")) if text.removeprefix("v").isdigit() else -1
    elif "@" in name:
        name, _, alias = name.partition("@")
    model = catalog.lookup(name, alias or default_alias, version)
    if model is None:
        metrics.errors.labels("unknown_model").inc()
        wanted = f"{name} v{version}" if version is not None else f"{name}@{alias or default_alias}"
        raise HTTPException(404, {"msg": f"no model {wanted} is served", "served": catalog.names()})
    return model, None if version is not None else alias or default_alias


def _row_problems(model: LoadedModel, row: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    for field, kind in model.request_fields.items():
        loc = ["body", "rows", index, field]
        if field not in row or row[field] is None:
            if field != model.time_field:  # the time defaults to now
                problems.append({"loc": loc, "msg": f"field required ({kind})", "input": None})
            continue
        value = row[field]
        if (isinstance(value, bool) and kind != "bool") or not isinstance(value, _KINDS[kind]):
            problems.append({"loc": loc, "msg": f"expected {kind}", "input": value})
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append({"loc": loc, "msg": "expected a finite number", "input": str(value)})
        elif isinstance(value, str) and not 0 < len(value) <= 200:
            problems.append({"loc": loc, "msg": "expected 1 to 200 characters", "input": value[:50]})
    return problems


def _events(
    model: LoadedModel,
    rows: list[dict[str, Any]],
    scored: list[ScoredRow],
    ids: list[str],
    latency_ms: float | None,
    metrics: _Metrics,
    alias: str | None,
) -> list[Prediction]:
    entity_columns = sorted({use.entity_column for use in model.groups} | set(model.levels))
    out = []
    for row, s, prediction_id in zip(rows, scored, ids, strict=True):
        try:
            out.append(Prediction(
                event_time=s.request_time_ms, request_id=prediction_id, model=model.name,
                model_version=model.version, partition=s.served_by,
                entity_keys={c: str(row[c]) for c in entity_columns if row.get(c) is not None},
                features=s.features, prediction=s.prediction, alias=alias,
                latency_ms=None if latency_ms is None else min(latency_ms, 3_600_000.0),
                join_key=None if row.get("join_key") is None else str(row["join_key"])[:200],
                inputs={f: row[f] for f in model.request_fields if row.get(f) is not None},
                feature_times=s.feature_times,
            ))  # fmt: skip
        except ValidationError:
            metrics.errors.labels("prediction_event").inc()
    return out
