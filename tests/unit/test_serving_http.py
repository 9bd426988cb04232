"""The prediction service over real HTTP: degraded mode, recovery, auth, and Kafka being down.

A real model and a real RocksDB store; prediction events go to a Kafka that is not there. A slow
or failing store is the real RocksDB store behind a switch that delays or closes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from serving.app import create_app
from serving.emitter import PredictionEmitter
from serving.model import LoadedModel
from serving.settings import ServingSettings
from state.exceptions import StateError
from state.online import open_store
from state.online.base import OnlineRecord, OnlineStore
from streams.settings import KafkaSettings
from tests.unit.serving_helpers import catalog_serving, fold_before, running
from tests.unit.test_serving_core import T0, definition, model

__all__ = ["definition", "model"]

ROW = {"pickup_zone": "nyc-01", "city": "nyc", "country": "US", "rider_id": "r-1", "distance_km": 4.0,
       "requested_at": T0 + 3_600_000}  # fmt: skip


class Switch:
    """The real store, made slow (`delay_s`) or failing (`broken`) on demand; read as a remote store
    is (not `embedded`: on a thread, within the time budget) unless a test says otherwise."""

    embedded = follows_owner = False

    def __init__(self, store: OnlineStore) -> None:
        self.store, self.delay_s, self.broken = store, 0.0, False

    def get_many(self, keys: Sequence[tuple[str, str]], *, now_ms: int | None = None) -> dict[Any, OnlineRecord | None]:
        if self.broken:
            msg = "connection refused (the store is down)"
            raise StateError(msg)
        time.sleep(self.delay_s)
        return self.store.get_many(keys, now_ms=now_ms)

    async def get_many_async(
        self, keys: Sequence[tuple[str, str]], *, now_ms: int | None = None
    ) -> dict[Any, OnlineRecord | None]:
        if self.broken:
            msg = "connection refused (the store is down)"
            raise StateError(msg)
        await asyncio.sleep(self.delay_s)  # a remote store that is slow to answer
        return self.store.get_many(keys, now_ms=now_ms)


@pytest.fixture
def kafka() -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="127.0.0.1:1")  # nobody listens


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Switch]:
    with open_store("rocksdb", path=tmp_path / "online") as real:
        yield Switch(real)


def _serve(model: LoadedModel, store: Switch, kafka: KafkaSettings, **settings: Any):  # type: ignore[no-untyped-def]
    emitter = PredictionEmitter(kafka)
    app = create_app(catalog_serving(model, kafka), store, emitter, ServingSettings(**settings))  # type: ignore[arg-type]
    return running(app), emitter


def test_a_slow_or_failing_store_degrades_and_recovers_without_a_restart(
    model: LoadedModel, store: Switch, kafka: KafkaSettings
) -> None:
    server, emitter = _serve(model, store, kafka, store_budget_ms=50)
    with server as base, httpx.Client(base_url=base) as client:
        ok = client.post("/v1/models/eta/predict", json={"rows": [ROW]})
        assert ok.status_code == 200 and ok.json()["degraded"] is None
        store.delay_s = 1.0
        started = time.perf_counter()
        slow = client.post("/v1/models/eta/predict", json={"rows": [ROW]})
        assert time.perf_counter() - started < 0.9  # the budget, not the store, bounds the wait
        body = slow.json()
        assert slow.status_code == 200 and "did not answer within 50 ms" in body["degraded"]
        assert set(body["rows"][0]["missing"]) == {s.column for s in model.inputs.stored}
        assert body["rows"][0]["prediction"] > 0  # the model still answers on missing values
        store.delay_s, store.broken = 0.0, True
        down = client.post("/v1/models/eta/predict", json={"rows": [ROW]})
        assert down.status_code == 200 and "connection refused" in down.json()["degraded"]
        store.broken = False
        back = client.post("/v1/models/eta/predict", json={"rows": [ROW]})
        assert back.status_code == 200 and back.json()["degraded"] is None
        assert 'affresco_predict_errors_total{kind="online_store"} 2.0' in client.get("/metrics").text
    emitter.close(timeout=1)


def test_an_inline_store_that_fails_still_degrades(model: LoadedModel, store: Switch, kafka: KafkaSettings) -> None:
    server, emitter = _serve(model, store, kafka, store_reads="inline")
    with server as base:
        assert httpx.post(f"{base}/v1/models/eta/predict", json={"rows": [ROW]}).json()["degraded"] is None
        store.broken = True
        down = httpx.post(f"{base}/v1/models/eta/predict", json={"rows": [ROW]})
        assert down.status_code == 200 and "connection refused" in down.json()["degraded"]
        store.broken = False
        assert httpx.post(f"{base}/v1/models/eta/predict", json={"rows": [ROW]}).json()["degraded"] is None
    emitter.close(timeout=1)


def test_a_failing_store_can_refuse_with_503_and_the_reason(
    model: LoadedModel, store: Switch, kafka: KafkaSettings
) -> None:
    server, emitter = _serve(model, store, kafka, on_store_failure="unavailable")
    with server as base:
        store.broken = True
        refused = httpx.post(f"{base}/v1/models/eta/predict", json={"rows": [ROW]})
        assert refused.status_code == 503 and "connection refused" in refused.json()["detail"]
    emitter.close(timeout=1)


def test_auth_is_off_by_default_and_refuses_without_the_token_when_on(
    model: LoadedModel, store: Switch, kafka: KafkaSettings
) -> None:
    server, emitter = _serve(model, store, kafka, token=SecretStr("s3cret"))
    with server as base, httpx.Client(base_url=base) as client:
        assert client.post("/v1/models/eta/predict", json={"rows": [ROW]}).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert client.post("/v1/models/eta/predict", json={"rows": [ROW]}, headers=wrong).status_code == 403
        assert client.get("/v1/models", headers=wrong).status_code == 403
        right = {"authorization": "Bearer s3cret"}
        assert client.post("/v1/models/eta/predict", json={"rows": [ROW]}, headers=right).status_code == 200
        assert client.get("/healthz").status_code == 200  # health needs no token
    emitter.close(timeout=1)
    server, emitter = _serve(model, store, kafka)
    with server as base:
        assert httpx.post(f"{base}/v1/models/eta/predict", json={"rows": [ROW]}).status_code == 200
    emitter.close(timeout=1)


def test_with_kafka_down_it_keeps_serving_and_counts_what_it_could_not_emit(
    model: LoadedModel, store: Switch, kafka: KafkaSettings
) -> None:
    """The predictions topic cannot be created: events wait for it (up to a bound), the rest are counted as lost."""
    emitter = PredictionEmitter(kafka, max_pending=4)
    app = create_app(catalog_serving(model, kafka), store, emitter, ServingSettings())  # type: ignore[arg-type]
    with running(app) as base, httpx.Client(base_url=base) as client:
        for _ in range(5):
            assert client.post("/v1/models/eta/predict", json={"rows": [ROW, ROW]}).status_code == 200
        ready = client.get("/readyz").json()
        assert (ready["prediction_events_pending"], ready["prediction_events_failed"]) == (4, 6)
        assert ready["prediction_events_queued"] == 0  # nothing went to a topic the broker would auto-create
        text = client.get("/metrics").text
        assert "affresco_prediction_events_failed 6.0" in text and "affresco_prediction_events_pending 4.0" in text
    emitter.close(timeout=1)
    assert emitter.failed == 10  # what still waited at shutdown is lost too, and counted


def test_too_many_rows_are_refused_with_the_limit(model: LoadedModel, store: Switch, kafka: KafkaSettings) -> None:
    server, emitter = _serve(model, store, kafka, max_rows=3)
    with server as base:
        refused = httpx.post(f"{base}/v1/models/eta/predict", json={"rows": [ROW] * 4})
        assert refused.status_code == 422 and "at most 3 rows" in refused.text
    emitter.close(timeout=1)


def test_a_full_producer_queue_refuses_instead_of_blocking(kafka: KafkaSettings) -> None:
    """What keeps a request from waiting on Kafka: the emitter's sends raise on a full queue."""
    from streams.events.platform import Prediction
    from streams.producer import EventProducer

    event = Prediction(event_time=T0, request_id="p-1", model="eta", model_version=1, prediction=1.0)
    config = {"queue.buffering.max.messages": 2, "message.timeout.ms": 1000}
    with EventProducer(kafka, config=config, collect_failures=True) as producer:
        producer.send("t", event, block=False)
        producer.send("t", event, block=False)
        with pytest.raises(BufferError):
            producer.send("t", event, block=False)
    assert len(producer.take_failures()) == 2  # the two queued ones timed out, reported, not raised


def test_the_service_follows_the_processor_s_writes_to_rocksdb(
    model: LoadedModel, tmp_path: Path, kafka: KafkaSettings
) -> None:
    """Served from a secondary instance of the processor's store: a write after start-up is served soon after."""
    import threading

    from serving.core import predict_rows
    from serving.freshness import follow_store
    from streams.sim import simulate

    events = list(simulate(20_000, seed=5, start_ms=T0))
    request = next(e for e in reversed(events) if e.type_name() == "trip_requested")
    row = {**request.__dict__, "requested_at": request.event_time}
    stop = threading.Event()
    path = tmp_path / "online"
    with open_store("rocksdb", path=path) as owner, \
         open_store("rocksdb", path=path, access="secondary", catch_up_interval_ms=10**9) as follower:  # fmt: skip
        assert follow_store(owner, 0.05, stop) is None  # the owner sees its own writes
        thread = follow_store(follower, 0.05, stop)
        assert thread is not None
        emitter = PredictionEmitter(kafka)
        app = create_app(catalog_serving(model, kafka), follower, emitter, ServingSettings())
        try:
            with running(app) as base, httpx.Client(base_url=base) as client:
                [before] = client.post("/v1/models/eta/predict", json={"rows": [row]}).json()["rows"]
                assert set(before["missing"]) == set(before["features"])  # nothing processed yet
                fold_before(model, events, owner, request.event_time)  # the processor: every event before the request
                [expected] = predict_rows(model, [row], owner, now_ms=request.event_time)
                assert expected.features != before["features"]
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    [served] = client.post("/v1/models/eta/predict", json={"rows": [row]}).json()["rows"]
                    if served["features"] == expected.features:
                        break
                    time.sleep(0.05)
                assert served["features"] == expected.features and served["prediction"] == expected.prediction
        finally:
            stop.set()
            thread.join()
            emitter.close(timeout=1)
