"""`affresco monitor run` on the real Kafka: the stream join of predictions with outcomes — late,
duplicate, unmatched and invalid inputs counted or dead-lettered — its windows' metrics equal to
scikit-learn's on the pairs the definition gives, live Prometheus counters, and kill -9 at random
moments without a pair counted twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from models.registry import ModelRegistry
from monitoring.published import read_published
from streams.admin import TopicAdmin
from streams.events.platform import DeadLetter, Outcome, Prediction
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.topics import Topics
from tests.integration.helpers import read_all
from tests.integration.helpers import spec as spec_of

pytestmark = pytest.mark.integration

HORIZON_MS, WINDOW_MS = 2 * 3_600_000, 600_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % WINDOW_MS  # a window boundary
PARTITIONS = ("global/BR/sao", "global/US/nyc", "global/US/sf")


def _world(n: int, seed: int) -> dict[str, Any]:
    """Predictions and outcomes of `n` trips over ~6 h, and every kind of input the join must count."""
    rnd = random.Random(seed)
    predictions: list[Prediction] = []
    outcomes: list[Outcome] = []
    asked: dict[str, tuple[int, float, str]] = {}  # trip -> (prediction time, prediction, partition)
    for i in range(n):
        t = T0 + int(i * 6 * 3_600_000 / n)
        trip, partition, guess = f"trip-{i}", PARTITIONS[i % 3], rnd.uniform(300, 1500)
        kind = rnd.random()
        if kind < 0.97 or i < 10:
            predictions.append(Prediction(event_time=t, request_id=f"r-{i}", model="eta", model_version=1,
                                          partition=partition, prediction=guess, join_key=trip,
                                          latency_ms=rnd.uniform(0.5, 5)))  # fmt: skip
            asked[trip] = (t, guess, partition)
        if kind < 0.95 or kind >= 0.97:  # 2 % of the predictions never see their outcome; 3 % outcomes alone
            done = t + rnd.randint(60_000, 1_800_000)
            outcomes.append(Outcome(event_time=done, join_key=trip, label="eta_s", value=guess + rnd.gauss(0, 120)))
    # The join remembers a key for one horizon after it is settled: duplicates and late outcomes
    # come from the last hours, as a producer's retry or a slow outcome pipeline would.
    end = T0 + 6 * 3_600_000
    duplicate_predictions = rnd.sample([p for p in predictions if p.event_time >= end - 3_600_000], 40)
    recent = [o for o in outcomes if o.event_time >= end - 3_600_000]
    duplicate_outcomes = [o.model_copy(update={"value": o.value + 1}) for o in rnd.sample(recent, 30)]
    # Late: the outcome of a prediction that expired unmatched shortly before the log ends.
    completed = {o.join_key for o in outcomes}
    late = [
        Outcome(event_time=t + 1_000, join_key=trip, label="eta_s", value=1.0)
        for trip, (t, _, _) in asked.items()
        if trip not in completed and T0 + 4 * 3_600_000 <= t <= T0 + 4.4 * 3_600_000
    ][:20]
    return {"predictions": predictions, "outcomes": outcomes, "asked": asked, "late": late,
            "duplicate_predictions": duplicate_predictions, "duplicate_outcomes": duplicate_outcomes}  # fmt: skip


def _produce(settings: KafkaSettings, predictions_topic: str, outcomes_topic: str, world: dict[str, Any]) -> int:
    """In log order: each topic in time order, then the duplicates, the late outcomes and invalid records."""
    bad = [b"{not json", b'{"event_type": "prediction", "model": "eta"}', b'{"event_type": "prediction"}']
    with EventProducer(settings) as producer:
        producer.send_many(predictions_topic, world["predictions"])
        producer.send_many(outcomes_topic, sorted(world["outcomes"], key=lambda o: o.event_time))
        producer.flush()
        producer.send_many(predictions_topic, world["duplicate_predictions"])
        producer.send_many(outcomes_topic, [*world["duplicate_outcomes"], *world["late"]])
        for value in bad:
            producer.send_raw(predictions_topic, value, key=b"bad")
            producer.send_raw(outcomes_topic, value.replace(b"prediction", b"outcome"), key=b"bad")
        producer.flush()
    return len(bad)


def _expected_pairs(world: dict[str, Any]) -> list[tuple[int, float, float, str]]:
    """The definition: a prediction pairs with its trip's first outcome within [t, t + horizon]."""
    pairs = []
    for o in world["outcomes"]:
        found = world["asked"].get(o.join_key)
        if found is not None and found[0] <= o.event_time <= found[0] + HORIZON_MS:
            pairs.append((o.event_time, o.value, found[1], found[2]))
    return pairs


def _cli(model: str, spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "affresco.cli", "monitor", "run", model, "--spec", str(spec),
            "--epoch", "0.2", "--batch-size", "500", *extra]  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int, name: str) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith(name)}  # fmt: skip


def test_monitor_run_joins_counts_survives_kill_9_and_publishes_sklearn_metrics(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    from sklearn.metrics import mean_absolute_error

    suffix = uuid.uuid4().hex[:8]
    prefix = f"test.monitor.{suffix}"
    settings = kafka_settings.model_copy(update={"topic_prefix": prefix})
    topics = Topics(settings)
    outcomes_topic = f"test.outcomes.{suffix}"
    TopicAdmin(settings).ensure([topics.predictions_spec("eta"), spec_of(outcomes_topic, 4)])
    ModelRegistry(settings).register(
        "eta", 1, "file:///nowhere/eta/v1", {"manifest.json": "0" * 64}, {"mae": 1.0}, "regression"
    )  # a version whose bundle is elsewhere: no drift metrics
    world = _world(24_000, seed=12)
    invalid = _produce(settings, topics.predictions("eta"), outcomes_topic, world)
    spec = tmp_path / "eta.yaml"
    spec.write_text(yaml.safe_dump({
        "model": "eta", "outcomes": {"topic": outcomes_topic, "event_type": "outcome", "join_key": "join_key",
                                     "label": "value"},
        "horizon": "2h", "lateness": "1m", "windows": ["10m", "1h"],
        "alerts": [{"name": "mae_high", "metric": "mae", "above": 100_000, "window": "10m", "min_count": 30,
                    "scope": "partition"}],
    }))  # fmt: skip
    env = {**os.environ, "AFFRESCO_DATA_DIR": str(tmp_path / "data"), "AFFRESCO_KAFKA_TOPIC_PREFIX": prefix,
           "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}  # fmt: skip

    valid_predictions = len(world["predictions"]) + len(world["duplicate_predictions"])
    scraped: dict[str, float] = {}

    def run_until(share: float) -> float:
        """Start a following monitor, SIGKILL it once the restored join has taken `share` of the valid
        predictions (its Prometheus counts plus what waits); what it had taken then."""
        port = _free_port()
        proc = subprocess.Popen(_cli("eta", spec, "--metrics-port", str(port)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        seen = 0.0
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    live = _scrape(port, "affresco_monitor_")
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                scraped.update(live)
                seen = sum(v for k, v in live.items() if k.startswith("affresco_monitor_predictions_total"))
                seen += live.get('affresco_monitor_waiting{kind="predictions",model="eta"}', 0.0)
                if seen >= share * valid_predictions:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the following monitor stopped"
        finally:
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        return seen

    # kill -9 right at start-up (the recovery store being made), then at a third, half and most of
    # the catch-up, then once it has caught up: the restored counts never exceed what was produced.
    starting = subprocess.Popen(_cli("eta", spec), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.02)
    starting.send_signal(signal.SIGKILL)
    assert starting.wait(30) == -signal.SIGKILL
    progress = [run_until(share) for share in (0.3, 0.55, 0.8, 1.0)]
    assert progress[-1] == valid_predictions  # none counted twice by the restores, none lost
    assert scraped['affresco_monitor_predictions_total{model="eta",outcome="duplicate"}'] == 40
    assert any(k.startswith("affresco_monitor_window_pairs") and 'partition="global/BR/sao"' in k and v > 0
               for k, v in scraped.items())  # fmt: skip
    assert not any(k.startswith("affresco_monitor_alert_firing") and v for k, v in scraped.items())

    final = subprocess.run(_cli("eta", spec, "--until-idle"), env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])

    # Every input counted once, as the definition says, across four kills.
    pairs = _expected_pairs(world)
    assert summary["predictions"]["paired"] == len(pairs)
    assert summary["predictions"]["duplicate"] == 40
    assert summary["predictions"]["unmatched"] == len(world["predictions"]) - len(pairs)
    assert summary["outcomes"]["matched"] == len(pairs)
    assert summary["outcomes"]["duplicate"] == 30
    assert summary["outcomes"]["late"] == len(world["late"]) > 0
    assert summary["outcomes"]["unmatched"] == len(world["outcomes"]) - len(pairs)

    # The published windows (the last statement of each): counts and MAE from the pairs themselves.
    metrics, alerts = read_published("eta", settings)
    assert not alerts
    windows: dict[tuple[int, str | None], list[tuple[float, float]]] = defaultdict(list)
    for t, label, guess, partition in pairs:
        start = t - t % WINDOW_MS
        windows[(start, None)].append((label, guess))
        windows[(start, partition)].append((label, guess))
    ten = {
        (m.window_start, m.partition, m.metric): m
        for m in metrics
        if m.window_end - m.window_start == WINDOW_MS and (m.partition is not None or m.model_version is None)
    }
    assert sum(m.count for (_, p, name), m in ten.items() if p is None and name == "count") == len(pairs)
    for (start, partition), inside in windows.items():
        assert ten[(start, partition, "count")].value == len(inside)
        mae = mean_absolute_error([y for y, _ in inside], [p for _, p in inside])
        assert ten[(start, partition, "mae")].value == pytest.approx(mae, rel=1e-12)
    raw = [m for m in read_all(topics.monitoring, settings)]
    assert len(raw) >= len(metrics)  # republished windows after a kill are the same statements

    # Invalid inputs: dead letters with the reason, tagged as the monitor's, once per record.
    for topic in (topics.predictions("eta"), outcomes_topic):
        letters = [DeadLetter.model_validate_json(m.value() or b"") for m in read_all(topics.dlq(topic), settings)]
        assert {(d.source_partition, d.source_offset) for d in letters}.__len__() == invalid
        assert {d.group for d in letters} == {"monitor:eta"}
        assert {d.reason for d in letters} == {"malformed_json", "validation_error"}


def test_champion_and_challenger_are_compared_per_partition_on_the_same_outcomes(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """v1 (prod) and v2 (shadow) predict the same trips; v2 is better in São Paulo, worse in New York:
    `affresco models compare` says so from what `monitor run` published."""
    suffix = uuid.uuid4().hex[:8]
    prefix = f"test.champion.{suffix}"
    settings = kafka_settings.model_copy(update={"topic_prefix": prefix})
    topics = Topics(settings)
    outcomes_topic = f"test.outcomes.{suffix}"
    TopicAdmin(settings).ensure([topics.predictions_spec("eta"), spec_of(outcomes_topic, 2)])
    registry = ModelRegistry(settings)
    for version in (1, 2):
        registry.register(
            "eta", version, f"file:///nowhere/eta/v{version}", {"manifest.json": "0" * 64}, {}, "regression"
        )
    rnd = random.Random(8)
    predictions, outcomes = [], []
    error = {("global/BR/sao", 1): 200, ("global/BR/sao", 2): 40, ("global/US/nyc", 1): 40, ("global/US/nyc", 2): 90}
    for i in range(4000):
        t, partition, truth = T0 + i * 2_000, PARTITIONS[i % 2], rnd.uniform(300, 1500)
        for version, alias in ((1, "prod"), (2, "shadow")):
            guess = truth + rnd.choice((-1, 1)) * error[(partition, version)]
            predictions.append(Prediction(event_time=t, request_id=f"{alias}-{i}", model="eta",
                                          model_version=version, partition=partition, prediction=guess,
                                          join_key=f"trip-{i}", alias=alias))  # fmt: skip
        outcomes.append(Outcome(event_time=t + 300_000, join_key=f"trip-{i}", label="eta_s", value=truth))
    with EventProducer(settings) as producer:
        producer.send_many(topics.predictions("eta"), predictions)
        producer.send_many(outcomes_topic, outcomes)
    spec = tmp_path / "eta.yaml"
    outcome = {"topic": outcomes_topic, "event_type": "outcome", "join_key": "join_key", "label": "value"}
    spec.write_text(yaml.safe_dump({"model": "eta", "outcomes": outcome, "horizon": "1h", "windows": ["10m"]}))
    env = {**os.environ, "AFFRESCO_DATA_DIR": str(tmp_path / "data"), "AFFRESCO_KAFKA_TOPIC_PREFIX": prefix,
           "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}  # fmt: skip
    monitored = subprocess.run(_cli("eta", spec, "--until-idle"), env=env, capture_output=True, text=True, timeout=300)
    assert monitored.returncode == 0, monitored.stderr[-3000:]
    assert json.loads(monitored.stdout.strip().splitlines()[-1])["predictions"]["paired"] == 8000  # both per trip
    cli = Path(sys.executable).parent / "affresco"
    compared = subprocess.run([str(cli), "models", "compare", "eta", "--metric", "mae"], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert compared.returncode == 0, compared.stderr[-3000:]
    rows = {r["partition"]: r for r in json.loads(compared.stdout.strip().splitlines()[-1])}
    assert rows["global/BR/sao"]["winner"] == 2 and rows["global/US/nyc"]["winner"] == 1
    assert rows["global/BR/sao"]["values"] == {"1": pytest.approx(200), "2": pytest.approx(40)}
    assert rows["global/BR/sao"]["pairs"] == {"1": 2000, "2": 2000}
