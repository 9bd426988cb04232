"""The prediction service on the real Cassandra node: training/serving parity, and degraded mode
with the node stopped and restarted under a running service (each test in a fresh keyspace).

Parity is the RocksDB check of tests/unit/test_serving_core.py run on a `CassandraStore`. The
outage is real: the node is stopped and started again through the session's `LocalInfra`, and the
service (uvicorn in this process, the same `CassandraStore` throughout) must answer degraded, or
503 when told to, and serve features again once the node is back, without a restart: the session
retries the node every `reconnect_max_delay_s` at most (measured here: stopping the node ~5 s,
starting it ~7 s, serving again within ~0.2 s of it answering; the driver's default backoff had
added ~8 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

import httpx
import pytest

from models.validate import ModelDefinition
from serving.app import create_app
from serving.core import predict_rows
from serving.emitter import PredictionEmitter
from serving.model import LoadedModel
from serving.settings import ServingSettings
from state.cassandra.options import CassandraSettings
from state.cassandra.session import close, connect
from state.cassandra.store import CassandraStore
from streams.settings import KafkaSettings
from streams.sim import simulate
from tests.integration.helpers import fresh_keyspace
from tests.unit.serving_helpers import catalog_serving, fold_before, running
from tests.unit.test_serving_core import T0, check_training_serving_parity, definition, model

__all__ = ["definition", "model"]

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]

logger = logging.getLogger(__name__)

#: A degraded answer must come back within this (the store budget bounds it; this only rules out a hang).
ANSWER_S = 5.0
#: How long the service may take to serve features again once the node answers.
RECOVERY_S = 60.0


@pytest.fixture
def settings(cassandra_settings: CassandraSettings) -> Iterator[CassandraSettings]:
    with fresh_keyspace(cassandra_settings) as fresh:
        yield fresh


def test_served_features_and_predictions_equal_the_training_set_rows_on_cassandra(
    settings: CassandraSettings, definition: ModelDefinition, model: LoadedModel
) -> None:
    started = time.perf_counter()
    with CassandraStore(settings) as store:
        # The same requests as the RocksDB test (193): ~10 s with TCP_NODELAY on the driver's sockets.
        served = check_training_serving_parity(store, definition, model)
    assert served > 100
    logger.info("parity on Cassandra: %d requests in %.1f s", served, time.perf_counter() - started)


def _predict(client: httpx.Client, row: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = client.post("/v1/models/eta/predict", json={"rows": [row]}, timeout=ANSWER_S)
    return response, time.perf_counter() - started


def test_with_the_node_stopped_it_answers_degraded_or_503_and_recovers_when_it_is_back(
    settings: CassandraSettings, model: LoadedModel, local_infra: Any
) -> None:
    events = list(simulate(20_000, seed=5, start_ms=T0))

    def has_history(request: Any) -> bool:  # rider_history counts completed trips: a first-time rider has none
        return any(e.type_name() == "trip_completed" and e.__dict__["rider_id"] == request.rider_id
                   and e.event_time < request.event_time for e in events)  # fmt: skip

    request = next(e for e in reversed(events) if e.type_name() == "trip_requested" and has_history(e))
    row = {**request.__dict__, "requested_at": request.event_time}
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")  # nobody listens: events are not the point here
    stored = {s.column for s in model.inputs.stored}
    # A generous budget, so a slow read on a busy machine is not taken for the outage.
    budget_ms = 1_000
    [node] = local_infra.status({"cassandra"})
    if node.state != "running":  # e.g. a node in a container: not ours to stop
        pytest.skip(f"the Cassandra node on {node.address} was not started by affresco infra ({node.state})")
    with CassandraStore(settings) as store:
        fold_before(model, events, store, request.event_time)  # the processor: every event before the request
        [expected] = predict_rows(model, [row], store, now_ms=request.event_time)
        assert not expected.missing  # every group has a record for the request's entities

        emitter = PredictionEmitter(kafka)
        missing = create_app(catalog_serving(model, kafka), store, emitter, ServingSettings(store_budget_ms=budget_ms))
        refusing = create_app(catalog_serving(model, kafka), store, emitter,
                              ServingSettings(store_budget_ms=budget_ms, on_store_failure="unavailable"))  # fmt: skip
        ours = "cassandra" in local_infra.started_by_this_process
        try:
            with running(missing) as base, running(refusing) as strict, \
                 httpx.Client(base_url=base) as client, httpx.Client(base_url=strict) as strict_client:  # fmt: skip
                ok, _ = _predict(client, row)
                assert ok.status_code == 200 and ok.json()["degraded"] is None
                [served] = ok.json()["rows"]
                assert served["features"] == expected.features and served["prediction"] == expected.prediction
                assert _predict(strict_client, row)[0].status_code == 200

                stopping = time.perf_counter()
                assert local_infra.down({"cassandra"}) == {"cassandra"}
                stopped_s = time.perf_counter() - stopping
                waits = []
                for _ in range(5):
                    down, took = _predict(client, row)
                    waits.append(took)
                    assert took < ANSWER_S
                    body = down.json()
                    assert down.status_code == 200, body
                    assert (
                        body["degraded"].startswith("the online store")
                        and "every feature is missing" in body["degraded"]
                    )
                    [degraded] = body["rows"]
                    assert set(degraded["missing"]) == stored and set(degraded["features"].values()) == {None}
                    assert degraded["prediction"] > 0  # the model still answers on missing values
                refused, took = _predict(strict_client, row)
                assert took < ANSWER_S
                assert refused.status_code == 503 and refused.json()["detail"].startswith("the online store")

                starting = time.perf_counter()
                local_infra.up({"cassandra"})
                started_s = time.perf_counter() - starting
                deadline = time.monotonic() + RECOVERY_S
                while True:
                    back, took = _predict(client, row)
                    assert back.status_code == 200 and took < ANSWER_S  # degraded or not, it answers meanwhile
                    if back.json()["degraded"] is None or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                recovered_s = time.perf_counter() - starting - started_s
                assert back.json()["degraded"] is None, f"still degraded {RECOVERY_S:g} s after the node was back"
                [served] = back.json()["rows"]
                assert served["features"] == expected.features and served["prediction"] == expected.prediction
                assert _predict(strict_client, row)[0].status_code == 200
                logger.info("cassandra stop %.1f s, start %.1f s, service recovered %.1f s after the node answered; "
                            "degraded answers took at most %.3f s (%s)", stopped_s, started_s, recovered_s,
                            max(waits), body["degraded"])  # fmt: skip
        finally:
            # Later tests of the session need the node. If the session was not to stop it at its end,
            # it is not to stop the restarted one either.
            local_infra.up({"cassandra"})
            if not ours:
                local_infra.started_by_this_process.discard("cassandra")
            emitter.close(timeout=1)


def test_a_node_that_went_down_is_retried_every_few_seconds_forever(cassandra_settings: CassandraSettings) -> None:
    session = connect(cassandra_settings)
    try:
        delays = list(islice(session.cluster.reconnection_policy.new_schedule(), 1_000))
    finally:
        close(session)
    assert len(delays) == 1_000  # the driver's default gives up after 64 attempts
    assert delays[0] < 0.5 and max(delays) == cassandra_settings.reconnect_max_delay_s
    with pytest.raises(ValueError, match="reconnect_max_delay_s"):
        CassandraSettings(reconnect_base_delay_s=5.0, reconnect_max_delay_s=1.0)
