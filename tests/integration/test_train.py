"""`affresco train` end to end on the real Kafka: a training set built from the topics, one job, a
bundle whose checksums the registry event carries, registered and deployed; bad specs stop first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from models.bundle import load_bundle, sha256_hex
from models.registry import ModelRegistry
from streams.admin import TopicAdmin
from streams.events.platform import Prediction
from streams.settings import KafkaSettings
from tests.integration.helpers import read_all
from tests.integration.processor_helpers import demo_group_docs, produce_simulation, write_yaml

pytestmark = pytest.mark.integration


def _spec(trips: str, suffix: str) -> dict[str, Any]:
    zd, ce, zs = f"zone_demand_{suffix}", f"city_eta_{suffix}", f"zone_supply_{suffix}"
    return {
        "model": "eta", "owner": "t@affresco.dev", "description": "ETA, integration test", "task": "regression",
        "label": "eta_s",
        "training_set": {"labels": trips, "label_type": "trip_completed", "time_field": "requested_at",
                         "entities": {zs: "pickup_zone"}},
        "request": {"distance_km": "float", "requested_at": "int"},
        "features": [
            "distance_km", {"name": "log_km", "expr": "log(distance_km)"},
            {"name": "hour", "expr": "hour_of_day(requested_at)"},
            f"{zd}:requests_10m", f"{zs}:available_drivers_10m", f"{ce}:mean_s_per_km_1h",
            {"name": "expected_drive_s", "expr": f"distance_km * {ce}__mean_s_per_km_1h"},
        ],
        "partitions": {"by": ["country", "city"], "min_rows": 400, "min_validation_rows": 50},
        "trainer": {"library": "xgboost", "params": {"n_estimators": 60, "max_depth": 5}},
    }  # fmt: skip


def _affresco(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "affresco"
    return subprocess.run([str(cli), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, kafka_settings: KafkaSettings) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("train")
    suffix = uuid.uuid4().hex[:8]
    trips, pings = f"test.trips.{suffix}", f"test.pings.{suffix}"
    produce_simulation(kafka_settings, trips, pings, 120_000, seed=3)
    definitions = write_yaml(demo_group_docs(trips, pings), tmp / "groups")
    spec = tmp / "eta.yaml"
    spec.write_text(yaml.safe_dump(_spec(trips, suffix), sort_keys=False))
    prefix = f"test.models.{suffix}"
    env = {"AFFRESCO_KAFKA_TOPIC_PREFIX": prefix, "AFFRESCO_DATA_DIR": str(tmp / "data")}
    settings = kafka_settings.model_copy(update={"topic_prefix": prefix})
    return {"tmp": tmp, "spec": spec, "definitions": definitions, "env": env, "settings": settings, "suffix": suffix,
            "trips": trips}  # fmt: skip


@pytest.fixture(scope="module")
def trained(world: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    done = _affresco(["train", "--spec", str(world["spec"]), "-d", str(world["definitions"]), "--deploy", "prod"],
                     world["env"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_train_builds_registers_and_deploys_a_checked_bundle(
    world: dict[str, Any], trained: subprocess.CompletedProcess[str]
) -> None:
    done = trained
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["version"] == 1 and summary["registered"] and summary["deployed"] == "prod"
    assert summary["metrics"]["rmse"] < summary["metrics"]["baseline_global_mean.rmse"]
    assert "global/US/nyc" in done.stderr  # the summary table names the nodes

    state = ModelRegistry(world["settings"]).state()
    record = state.resolve("eta", "prod")
    assert record.version == 1 and record.bundle_uri == summary["bundle"]
    bundle = load_bundle(record.bundle_uri, record.sha256)  # every file matches the event's checksums
    manifest = bundle.manifest
    assert manifest["training_set"]["built_from"]["labels"] == world["trips"]
    persisted = Path(manifest["training_set"]["uri"])
    assert sha256_hex(persisted.read_bytes()) == manifest["training_set"]["sha256"]  # the one persisted set
    table = pq.read_table(persisted)
    assert table.num_rows == manifest["training_set"]["rows"] > 1000
    assert f"zone_demand_{world['suffix']}__requests_10m" in table.column_names
    nodes = {n["id"]: n for n in manifest["partitions"]["nodes"]}
    assert {"global", "global/US", "global/US/nyc"} <= set(nodes)
    assert all(n["serves"] in nodes and n["reason"] for n in nodes.values())
    assert record.metrics["rows_validation"] == manifest["training_set"]["split"]["rows_validation"]

    again = _affresco(["train", "--spec", str(world["spec"]), "-d", str(world["definitions"])], world["env"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["version"] == 2  # numbered from the topic
    listed = _affresco(["models", "list", "--model", "eta", "--json"], world["env"])
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    assert sorted(r["version"] for r in rows) == [1, 2]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d, s: d["features"].append(f"zone_demand_{s}:no_such"), "has no feature 'no_such'"),
        (lambda d, s: d["features"].append("ghost_group:x"), "unknown feature group 'ghost_group'"),
        (lambda d, s: d["features"].append({"name": "bad", "expr": "distance_km * city"}), "operator '*'"),
        (lambda d, s: d.update(label="city"), "'city' must be numeric"),
        (lambda d, s: d["partitions"].update(by=["country", "district"]), "partition column 'district'"),
    ],
)
def test_a_bad_spec_stops_before_training_and_emits_nothing(
    world: dict[str, Any], change: Callable[[dict[str, Any], str], None], expected: str
) -> None:
    doc = _spec(world["trips"], world["suffix"])
    change(doc, world["suffix"])
    bad = world["tmp"] / f"bad-{uuid.uuid4().hex[:6]}.yaml"
    bad.write_text(yaml.safe_dump(doc, sort_keys=False))
    registry = ModelRegistry(world["settings"])
    registry.ensure_topic()
    before = TopicAdmin(world["settings"]).describe(registry.topic).messages
    done = _affresco(["train", "--spec", str(bad), "-d", str(world["definitions"])], world["env"])
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and str(bad) in done.stderr
    assert "building the training set" not in done.stderr  # stopped before reading anything
    assert TopicAdmin(world["settings"]).describe(registry.topic).messages == before


def test_a_hierarchy_under_its_minimum_stops_before_any_fit(world: dict[str, Any]) -> None:
    doc = _spec(world["trips"], world["suffix"])
    doc["partitions"]["min_rows"] = 10_000_000
    spec = world["tmp"] / "huge-minimum.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    done = _affresco(["train", "--spec", str(spec), "-d", str(world["definitions"])], world["env"])
    assert done.returncode == 1
    assert "every node is under its minimum" in done.stderr


def test_predict_batch_equals_the_training_set_and_emits_predictions(
    world: dict[str, Any], trained: subprocess.CompletedProcess[str]
) -> None:
    """Every trip request scored from the log: the same features as its training-set row, the same prediction."""
    from serving.core import FeatureFrame, score
    from serving.model import LoadedModel

    out = world["tmp"] / "predictions.parquet"
    done = _affresco(["predict-batch", "--model", "eta@prod", "--input", world["trips"], "--event-type",
                      "trip_requested", "--output", str(out), "-d", str(world["definitions"]), "--emit",
                      "--join-key", "trip_id"], world["env"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    predicted = {r["trip_id"]: r for r in pq.read_table(out).to_pylist()}
    assert summary["rows"] == summary["emitted"] == len(predicted) > 1000 and summary["version"] == 1
    topic = f"{world['settings'].topic_prefix}.predictions.eta"
    assert TopicAdmin(world["settings"]).describe(topic).messages == summary["rows"]

    record = ModelRegistry(world["settings"]).state().resolve("eta", "prod")
    bundle = load_bundle(record.bundle_uri, record.sha256)
    from processors.definitions import load_groups

    model = LoadedModel.from_bundle(bundle, {g.name: g for g in load_groups([world["definitions"]])})
    training = pq.read_table(bundle.manifest["training_set"]["uri"]).to_pylist()
    stored = [s.column for s in model.inputs.stored]
    sample = training[::7]
    frame = FeatureFrame([r["requested_at"] for r in sample], {c: [r.get(c) for r in sample] for c in
                         [*model.inputs.request, *stored]}, {}, [[]] * len(sample))  # fmt: skip
    offline = score(model, sample, frame)
    for row, expected in zip(sample, offline, strict=True):
        served = predicted[row["trip_id"]]  # the trip's request, scored by predict-batch
        assert {c: served[c] for c in stored} == {c: row[c] for c in stored}, row["trip_id"]
        assert served["prediction"] == expected.prediction and served["partition"] == expected.served_by

    # explain: each sampled prediction re-derived from the raw log alone replays identically.
    for row in sample[:3]:
        prediction_id = predicted[row["trip_id"]]["prediction_id"]
        explained = _affresco(["explain", prediction_id, "-d", str(world["definitions"])], world["env"])
        assert explained.returncode == 0, explained.stderr[-2000:]
        report = json.loads(explained.stdout.strip().splitlines()[-1])
        assert report["identical"] and report["served"]["prediction"] == predicted[row["trip_id"]]["prediction"]
        assert all(f["event_time"]["served"] == f["event_time"]["replayed"] for f in report["features"])
        windowed = [f for f in report["features"] if f["events"]]
        assert windowed and all(f["events"]["window"][1] == row["requested_at"] - 1 for f in windowed)
        demand = next(f for f in windowed if f["feature"].endswith("__requests_10m"))
        assert demand["events"]["count"] == (demand["served"] or 0)  # the events behind the count, listed
    missing = _affresco(["explain", "no-such-id", "-d", str(world["definitions"])], world["env"])
    assert missing.returncode == 1 and "no prediction 'no-such-id'" in missing.stderr


def test_monitor_replay_pairs_the_batch_predictions_with_the_trips_and_publishes_their_metrics(
    world: dict[str, Any], trained: subprocess.CompletedProcess[str]
) -> None:
    """The predictions predict-batch emitted, joined with the trips' completions: every pair found,
    each window's MAE the one scikit-learn computes on its pairs, published on affresco.monitoring."""
    from sklearn.metrics import mean_absolute_error

    from backfill.training import labels_from_topic
    from streams.events.platform import MonitoringMetric

    out = world["tmp"] / "monitored.parquet"
    done = _affresco(["predict-batch", "--model", "eta@prod", "--input", world["trips"], "--event-type",
                      "trip_requested", "--output", str(out), "-d", str(world["definitions"]), "--emit",
                      "--join-key", "trip_id"], world["env"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    spec = world["tmp"] / "monitor.yaml"
    doc = yaml.safe_load((Path(__file__).parents[2] / "monitoring" / "specs" / "eta.yaml").read_text())
    doc["outcomes"]["topic"] = world["trips"]
    spec.write_text(yaml.safe_dump(doc))
    replayed = _affresco(["monitor", "replay", "--spec", str(spec), "--publish"], world["env"])
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    summary = json.loads(replayed.stdout.strip().splitlines()[-1])

    predicted = {r["trip_id"]: r for r in pq.read_table(out).to_pylist()}
    completed, _ = labels_from_topic(world["trips"], "trip_completed", world["settings"])
    asked = {trip: row["event_time"] for trip, row in predicted.items()}  # each request's time
    horizon = 7_200_000

    def within(c: dict[str, Any]) -> bool:
        return c["trip_id"] in asked and asked[c["trip_id"]] <= c["event_time"] <= asked[c["trip_id"]] + horizon

    pairs = [(c, predicted[c["trip_id"]]) for c in completed if within(c)]
    assert len(pairs) > 1000 and summary["predictions"]["paired"] == len(pairs)
    assert summary["outcomes"]["matched"] == len(pairs)  # one prediction per trip (a re-emission is a duplicate)
    assert sum(summary["predictions"].values()) >= len(predicted)

    topic = f"{world['settings'].topic_prefix}.monitoring"
    published = [json.loads(m.value() or b"{}") for m in read_all(topic, world["settings"])]
    metrics = [MonitoringMetric.model_validate(e) for e in published if e["event_type"] == "monitoring_metric"]
    assert len(metrics) == summary["metric_events"]
    assert len([e for e in published if e["event_type"] == "alert"]) == len(summary["alerts"])
    overall = [m for m in metrics if m.model_version is None and m.window_end - m.window_start == 600_000]
    assert sum(m.count for m in overall if m.metric == "count") == len(pairs)
    busiest = max((m for m in overall if m.metric == "mae"), key=lambda m: m.count)
    inside = [
        (c["eta_s"], p["prediction"]) for c, p in pairs if busiest.window_start <= c["event_time"] < busiest.window_end
    ]
    assert busiest.count == len(inside)
    assert busiest.value == pytest.approx(
        mean_absolute_error([y for y, _ in inside], [p for _, p in inside]), rel=1e-12
    )
    by_partition = {m.partition for m in metrics if m.partition is not None}
    assert by_partition and by_partition <= {p["partition"] for _, p in pairs}
    # The traffic itself, per prediction-time window: drift against the bundle, missing features.
    names = {m.metric for m in metrics if m.model_version == 1 and m.partition is None}
    assert {"predictions", "missing_feature_rate", "prediction_psi", "feature_psi_max", "psi:distance_km",
            "ks:distance_km"} <= names  # fmt: skip

    # The report, from what was published, drawn by a real browser (headless Chromium).
    page = world["tmp"] / "report.html"
    drawn = _affresco(["report", "--model", "eta", "--out", str(page)], world["env"])
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    shot = screenshot(page, world["tmp"] / "report.png")
    assert colored_pixels(shot, (31, 119, 180)) > 200  # the first series' lines and points drew


def screenshot(page: Path, png: Path) -> Path:
    """`page` rendered by headless Chromium (Debian's package, installed by `make tools`) into `png`."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is needed (apt-get install -y chromium; `make tools` installs it)"
    done = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=900,2400", f"--screenshot={png}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and png.exists(), done.stderr[-2000:]
    return png


def colored_pixels(png: Path, rgb: tuple[int, int, int], tolerance: int = 30) -> int:
    from PIL import Image

    with Image.open(png) as image:
        pixels = list(image.convert("RGB").get_flattened_data())
        return sum(all(abs(c - r) <= tolerance for c, r in zip(p, rgb, strict=True)) for p in pixels)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_predicts_over_http_emits_events_and_swaps_models_without_a_failed_request(
    world: dict[str, Any], trained: subprocess.CompletedProcess[str]
) -> None:
    import threading
    import time

    import httpx

    from backfill.training import labels_from_topic

    groups = [f"{g}_{world['suffix']}" for g in ("zone_demand", "zone_supply", "city_eta", "rider_history")]
    done = _affresco(["process", "run", *groups, "--until-idle", "-d", str(world["definitions"])], world["env"])
    assert done.returncode == 0, done.stderr[-2000:]
    if ModelRegistry(world["settings"]).state().next_version("eta") == 2:  # this test alone: a second version
        assert _affresco(["train", "--spec", str(world["spec"]), "-d", str(world["definitions"])],
                         world["env"]).returncode == 0  # fmt: skip
    port = _free_port()
    cli = Path(sys.executable).parent / "affresco"
    log = world["tmp"] / f"serve-{port}.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(cli), "serve", "--port", str(port), "--workers", "2", "-d",
                                   str(world["definitions"])],
                                  env={**os.environ, **world["env"], "AFFRESCO_SERVING_RELOAD_INTERVAL_S": "0.5"},
                                  stderr=out)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()
            time.sleep(0.3)
        requests, _ = labels_from_topic(world["trips"], "trip_requested", world["settings"])
        rows = [{"pickup_zone": r["pickup_zone"], "city": r["city"], "country": r["country"], "rider_id": r["rider_id"],
                 "distance_km": r["distance_km"], "requested_at": r["event_time"], "join_key": r["trip_id"]}
                for r in requests[-40:]]  # fmt: skip
        topic = f"{world['settings'].topic_prefix}.predictions.eta"
        admin = TopicAdmin(world["settings"])
        emitted_before = admin.describe(topic).messages if topic in admin.names() else 0  # predict-batch's
        answer = httpx.post(f"{base}/v1/models/eta/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        served = answer.json()["rows"]
        assert len(served) == len(rows) and {r["version"] for r in served} == {1}
        assert all(r["prediction"] > 0 and r["partition"].startswith("global") for r in served)
        assert any(r["features"][f"zone_demand_{world['suffix']}__requests_10m"] for r in served)  # from the store

        unknown = httpx.post(f"{base}/v1/models/nope/predict", json={"rows": rows[:1]})
        assert unknown.status_code == 404 and "eta" in unknown.json()["detail"]["served"]
        bad_rows = [{**rows[0], "distance_km": "far"}, {k: v for k, v in rows[0].items() if k != "city"}]
        broken = httpx.post(f"{base}/v1/models/eta/predict", json={"rows": bad_rows})
        assert broken.status_code == 422
        where = {tuple(p["loc"][2:]) for p in broken.json()["detail"]}
        assert where == {(0, "distance_km"), (1, "city")}
        nan = httpx.post(f"{base}/v1/models/eta/predict", content='{"rows": [{"distance_km": NaN}]}',
                         headers={"content-type": "application/json"})  # fmt: skip
        assert nan.status_code == 422
        # Two worker processes: connections land on either, and /metrics adds up both.
        # (The second worker may still be loading its models when the first answers: ask a while.)
        workers: set[int] = set()
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            ready = httpx.get(f"{base}/readyz")
            if ready.status_code == 200:
                workers.add(ready.json()["worker"])
        assert len(workers) == 2, workers
        metrics = httpx.get(f"{base}/metrics").text
        scored = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("affresco_predictions_total{"))  # fmt: skip
        assert scored == len(rows)

        deadline = time.monotonic() + 20  # emitted off the response path: they arrive soon after
        while admin.describe(topic).messages < emitted_before + len(rows) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert admin.describe(topic).messages == emitted_before + len(rows)

        failures: list[str] = []
        versions: set[int] = set()
        stop = threading.Event()

        def load() -> None:
            with httpx.Client() as client:
                while not stop.is_set():
                    r = client.post(f"{base}/v1/models/eta/predict", json={"rows": rows[:5]})
                    if r.status_code != 200:
                        failures.append(r.text)
                    else:
                        versions.update(row["version"] for row in r.json()["rows"])

        thread = threading.Thread(target=load)
        thread.start()
        try:
            for action in (
                ["deploy", "eta", "--version", "2", "--alias", "prod"],
                ["rollback", "eta", "--alias", "prod"],
            ):
                assert _affresco(["models", *action], world["env"]).returncode == 0
                target = 2 if action[0] == "deploy" else 1
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    prod = [m for m in httpx.get(f"{base}/v1/models").json()["served"] if m["alias"] == "prod"]
                    if prod and prod[0]["version"] == target:
                        break
                    time.sleep(0.2)
                assert prod and prod[0]["version"] == target
        finally:
            stop.set()
            thread.join()
        assert failures == [] and versions == {1, 2}  # both served, not one request failed

        # Champion/challenger: v2 deployed as `shadow` scores prod's requests off the response path.
        assert (
            _affresco(["models", "deploy", "eta", "--version", "2", "--alias", "shadow"], world["env"]).returncode == 0
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            m["alias"] == "shadow" for m in httpx.get(f"{base}/v1/models").json()["served"]
        ):
            time.sleep(0.2)
        shadowed = [{**r, "join_key": f"shadow-{r['join_key']}"} for r in rows[:10]]
        answer = httpx.post(f"{base}/v1/models/eta/predict", json={"rows": shadowed})
        assert answer.status_code == 200 and {r["version"] for r in answer.json()["rows"]} == {1}
        wanted = {r["join_key"] for r in shadowed}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            logged = [Prediction.model_validate_json(m.value() or b"") for m in read_all(topic, world["settings"])]
            mine = [p for p in logged if p.join_key in wanted]
            if len(mine) == 2 * len(wanted):
                break
            time.sleep(0.5)
        assert {(p.alias, p.model_version) for p in mine} == {("prod", 1), ("shadow", 2)}
        assert {p.join_key for p in mine if p.alias == "shadow"} == wanted  # the same outcomes will pair with both
    finally:
        server.terminate()
        server.wait(timeout=20)
