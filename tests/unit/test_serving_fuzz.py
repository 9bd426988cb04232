"""The prediction service's OpenAPI spec, fuzzed (schemathesis): nothing a client sends is a server error.

The app runs on a real HTTP server with a real model and a real (empty) RocksDB store; its
prediction events go to a Kafka that is not there, which the service must survive too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from serving.app import create_app
from serving.emitter import PredictionEmitter
from serving.settings import ServingSettings
from state.online import open_store
from streams.settings import KafkaSettings
from tests.unit.serving_helpers import catalog_serving, running
from tests.unit.test_serving_core import definition, model  # fixtures: a trained demo model

__all__ = ["definition", "model"]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, model) -> Iterator[str]:  # type: ignore[no-untyped-def]
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")  # nobody listens: every emit fails, counted
    emitter = PredictionEmitter(kafka)
    with open_store("rocksdb", path=tmp_path_factory.mktemp("fuzz") / "online") as store:
        app = create_app(catalog_serving(model, kafka), store, emitter, ServingSettings(max_rows=50))
        with running(app) as url:
            yield url
    emitter.close(timeout=1)


def test_no_request_is_a_server_error(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/models/{name}/predict", "/v1/models", "/readyz"}
    calls = []
    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(base_url=base_url)
            calls.append((case.path, response.status_code))
            case.validate_response(response, checks=[not_a_server_error])

        call()
    predicts = [status for path, status in calls if path.endswith("/predict")]
    assert len(predicts) >= 30 and all(status < 500 for _, status in calls)
