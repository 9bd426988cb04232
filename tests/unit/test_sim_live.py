"""Live simulation: each trip predicted before its events go out, against a real (small) HTTP server.

The server is the standard library's, speaking the prediction API's shape (`/readyz`,
`/v1/models/<model>/predict`), and told per test how to misbehave: the client under test is the
real one over real sockets.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from affresco.cli import app
from serving.client import PredictionClient, PredictionServiceError
from streams.events.base import Event
from streams.events.domain import TripRequested
from streams.sim import simulate
from streams.sim.live import LiveStats, request_row, with_predictions

START = 1_714_550_400_000  # Wednesday 2024-05-01 08:00 UTC


@dataclass
class Behaviour:
    """What the fake service does: fail the next `fail_next` predict calls with `fail_status`."""

    fail_next: int = 0
    fail_status: int = 503
    models: tuple[str, ...] = ("eta",)
    rows: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/readyz":
            self._send(200, {"models_loaded": True, "models": {m: ["prod -> v1"] for m in self.behaviour.models}})
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        b = self.behaviour
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        name = self.path.removeprefix("/v1/models/").removesuffix("/predict")
        with b.lock:
            b.calls += 1
            b.headers.append(dict(self.headers))
            if name not in b.models:
                self._send(404, {"detail": {"msg": f"no model {name}@prod is served", "served": list(b.models)}})
                return
            if b.fail_next > 0:
                b.fail_next -= 1
                self._send(b.fail_status, {"detail": "try later"})
                return
            b.rows.extend(body["rows"])
        self._send(200, {"rows": [{"prediction_id": str(i), "prediction": 600.0} for i, _ in enumerate(body["rows"])]})


@pytest.fixture
def service() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the ordering and batching of with_predictions ---------------------------------------------------


class _Recorder:
    """A predictor that remembers, for every row, how many events had been yielded when it was asked."""

    def __init__(self) -> None:
        self.yielded = 0
        self.asked_at: dict[str, int] = {}
        self.batches: list[int] = []
        self.failed = 0

    def predict_rows(self, rows: list[dict[str, Any]]) -> int:
        self.batches.append(len(rows))
        for row in rows:
            self.asked_at[row["join_key"]] = self.yielded
        failed = sum(row["city"] == "sao" for row in rows)  # as if São Paulo's rows failed
        self.failed += failed
        return failed


def test_every_trip_is_predicted_before_its_request_goes_out_and_order_is_kept() -> None:
    events = list(simulate(5_000, seed=3, start_ms=START))
    recorder, stats = _Recorder(), LiveStats()
    out: list[Event] = []
    for event in with_predictions(iter(events), recorder, batch_size=7, max_span_ms=60_000, stats=stats):
        if isinstance(event, TripRequested):
            # Asked before this request (and so before anything after it) was yielded.
            assert recorder.asked_at[event.trip_id] <= len(out)
        out.append(event)
        recorder.yielded = len(out)
    assert out == events  # nothing lost, nothing reordered
    requests = [e for e in events if isinstance(e, TripRequested)]
    assert stats.requested == len(requests) == len(recorder.asked_at) > 100
    assert max(recorder.batches) == 7 and min(recorder.batches) >= 1
    assert stats.batches == len(recorder.batches)
    assert stats.failed == recorder.failed == sum(e.city == "sao" for e in requests) > 0


def test_a_batch_never_spans_more_than_max_span_of_event_time() -> None:
    events = list(simulate(3_000, seed=5, start_ms=START))
    times = {e.trip_id: e.event_time for e in events if isinstance(e, TripRequested)}
    spans: list[int] = []

    class Spans:
        def predict_rows(self, rows: list[dict[str, Any]]) -> int:
            spans.append(times[rows[-1]["join_key"]] - times[rows[0]["join_key"]])
            return 0

    list(with_predictions(iter(events), Spans(), batch_size=1_000, max_span_ms=5_000))
    assert len(spans) > 10 and max(spans) <= 5_000


def test_the_row_carries_the_request_time_and_the_trip_as_join_key() -> None:
    request = next(e for e in simulate(500, seed=1, start_ms=START) if isinstance(e, TripRequested))
    row = request_row(request)
    assert row == {
        "pickup_zone": request.pickup_zone,
        "city": request.city,
        "country": request.country,
        "rider_id": request.rider_id,
        "distance_km": request.distance_km,
        "requested_at": request.event_time,
        "join_key": request.trip_id,
    }


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        list(with_predictions(iter([]), _Recorder(), batch_size=0))


# -- the HTTP client ---------------------------------------------------------------------------------


def test_client_predicts_and_counts(service: tuple[str, Behaviour]) -> None:
    url, behaviour = service
    with PredictionClient(url, model="eta", alias="prod") as client:
        client.wait_ready(timeout_s=5)
        assert client.predict_rows([{"city": "sao"}, {"city": "rio"}]) == 0
    assert [r["city"] for r in behaviour.rows] == ["sao", "rio"]
    assert behaviour.headers[0]["x-model-alias"] == "prod"
    assert (client.stats.rows, client.stats.predicted, client.stats.failed, client.stats.requests) == (2, 2, 0, 1)
    assert client.stats.latency_ms(0.5) is not None


def test_client_retries_a_service_that_is_briefly_unavailable(service: tuple[str, Behaviour]) -> None:
    url, behaviour = service
    behaviour.fail_next = 2
    with PredictionClient(url, retries=2, backoff_s=0.01) as client:
        assert client.predict_rows([{"city": "sao"}]) == 0
    assert behaviour.calls == 3 and client.stats.retries == 2 and client.stats.failed == 0


def test_client_counts_rows_that_still_fail_and_gives_up_after_consecutive_failures(
    service: tuple[str, Behaviour],
) -> None:
    url, behaviour = service
    behaviour.fail_next = 10**6
    with PredictionClient(url, retries=1, backoff_s=0.01, max_consecutive_failures=3) as client:
        assert client.predict_rows([{"city": "sao"}, {"city": "rio"}]) == 2
        assert client.predict_rows([{"city": "sao"}]) == 1
        with pytest.raises(PredictionServiceError, match=r"3 prediction requests in a row to http://127\.0\.0\.1:\d+"):
            client.predict_rows([{"city": "sao"}])
    assert client.stats.failed == 4 and client.stats.errors == {"HTTP 503": 3}


def test_client_does_not_retry_refused_rows_and_a_success_resets_the_failure_streak(
    service: tuple[str, Behaviour],
) -> None:
    url, behaviour = service
    behaviour.fail_next, behaviour.fail_status = 1, 422
    with PredictionClient(url, retries=3, backoff_s=0.01, max_consecutive_failures=2) as client:
        assert client.predict_rows([{"city": "sao"}]) == 1  # refused: not retried
        assert client.predict_rows([{"city": "sao"}]) == 0
        behaviour.fail_next = 1
        assert client.predict_rows([{"city": "sao"}]) == 1  # a streak of one again: no error
    assert behaviour.calls == 3 and client.stats.retries == 0


def test_client_names_the_url_when_the_model_is_not_served(service: tuple[str, Behaviour]) -> None:
    url, _ = service
    with PredictionClient(url, model="nope") as client:
        with pytest.raises(PredictionServiceError, match=r"not ready after 0\.5 s \(HTTP 200, serving eta\)"):
            client.wait_ready(timeout_s=0.5)
        with pytest.raises(PredictionServiceError, match=r"/v1/models/nope/predict answered 404"):
            client.predict_rows([{"city": "sao"}])


def test_client_names_the_url_of_a_service_that_is_down() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with PredictionClient(url, retries=1, backoff_s=0.01, max_consecutive_failures=1) as client:
        with pytest.raises(PredictionServiceError, match=rf"{url} is not ready after 0\.3 s \(ConnectError"):
            client.wait_ready(timeout_s=0.3)
        with pytest.raises(PredictionServiceError, match=rf"to {url}/v1/models/eta/predict failed .* ConnectError"):
            client.predict_rows([{"city": "sao"}])


def test_client_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="expected an http:// or https:// URL"):
        PredictionClient("127.0.0.1:8080")


# -- the CLI -----------------------------------------------------------------------------------------


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_simulate_live_asks_for_every_trip_and_reports_the_counts(
    service: tuple[str, Behaviour], tmp_path: Path
) -> None:
    url, behaviour = service
    behaviour.fail_next = 1  # retried: not a failure
    out = tmp_path / "events.jsonl"
    args = ["simulate", "-n", "3000", "--start", str(START), "--out", str(out), "--predict-url", url,
            "--predict-batch", "10"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    trips = [e for e in _lines(out) if e["event_type"] == "trip_requested"]
    assert [r["join_key"] for r in behaviour.rows] == [t["trip_id"] for t in trips]
    assert [r["requested_at"] for r in behaviour.rows] == [t["event_time"] for t in trips]
    said = " ".join(result.output.split())  # the console wraps lines
    assert f"live: {len(trips):,} predictions requested from {url}/v1/models/eta/predict" in said
    assert "(1 retries), 0 failed" in said
    assert f"predictions requested │ {len(trips):,}" in said and "predictions failed │ 0" in said


def test_simulate_live_fails_clearly_when_the_service_is_down(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    args = ["simulate", "-n", "100", "--start", str(START), "--out", str(tmp_path / "e.jsonl"),
            "--predict-url", url, "--predict-wait", "0.2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert f"the prediction service at {url} is not ready" in said
    assert "affresco serve" in said


def test_simulate_live_stops_with_the_reason_when_the_service_fails_every_request(
    service: tuple[str, Behaviour], tmp_path: Path
) -> None:
    url, behaviour = service
    behaviour.fail_next, behaviour.fail_status = 10**6, 500
    args = ["simulate", "-n", "3000", "--start", str(START), "--out", str(tmp_path / "e.jsonl"),
            "--predict-url", url, "--predict-batch", "5"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "prediction requests in a row to" in said and "HTTP 500" in said


def test_simulate_help_documents_live_mode() -> None:
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--predict-url", "--model", "--alias", "--predict-batch", "--predict-wait"):
        assert option in result.output
