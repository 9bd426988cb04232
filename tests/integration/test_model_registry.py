"""The model registry on a real (compacted) Kafka topic, and `affresco models` against it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affresco.cli import app
from models.bundle import write_bundle
from models.exceptions import ModelRegistryError
from models.registry import ModelRegistry, RegistryState
from streams.admin import TopicAdmin, TopicSpec
from streams.events import ModelVersion
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from tests.integration.helpers import read_all

pytestmark = pytest.mark.integration

SHA = {"manifest.json": "a" * 64, "nodes/global.onnx": "b" * 64}


def _metrics(rmse: float) -> dict[str, float]:
    own = {"rmse": rmse, "mae": rmse / 2, "r2": 0.5, "mape": 0.1, "bias": 0.01}
    counts = {"rows_train": 800.0, "rows_validation": 200.0, "nodes": 3.0, "nodes_fallback": 1.0}
    return {**own, **counts, "baseline_global_mean.rmse": 9.0, "baseline_node_mean.rmse": 7.0}


@pytest.fixture
def settings(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> KafkaSettings:
    # A fresh topic prefix gives each test its own `<prefix>.models` topic.
    return kafka_settings.model_copy(update={"topic_prefix": unique("models")})


def _end_offset(registry: ModelRegistry) -> int:
    [partition] = TopicAdmin(registry.settings).describe(registry.topic).partitions
    return partition.high


def test_events_round_trip_and_the_replayed_registry_equals_the_local_fold(settings: KafkaSettings) -> None:
    registry = ModelRegistry(settings)
    emitted: list[ModelVersion] = []
    for v, rmse in ((1, 5.0), (2, 4.0), (3, 4.5)):
        emitted.append(registry.register("eta", v, f"/bundles/eta/v{v}", SHA, _metrics(rmse), "regression"))
    emitted.append(registry.deploy("eta", 1, "prod", reason="first"))
    emitted.append(registry.deploy("eta", 2, "prod"))
    emitted.append(registry.deploy("eta", 3, "canary"))
    emitted.append(registry.rollback("eta", "prod", reason="v2 regressed"))
    emitted.append(registry.deploy("eta", 3, "prod"))
    emitted.append(registry.retire("eta", 2, reason="superseded"))

    records = read_all(registry.topic, settings)
    # Each event is durable when its call returns, byte for byte, under its compaction key.
    assert [ModelVersion.model_validate_json(m.value() or b"") for m in records] == emitted
    assert [(m.key() or b"").decode() for m in records] == [e.key() for e in emitted]
    assert [dict(m.headers() or [])["event_type"] for m in records] == [b"model_version"] * len(emitted)
    assert [m.timestamp()[1] for m in records] == [e.event_time for e in emitted]

    state = registry.state()
    assert state == RegistryState.fold(emitted)
    prod = state.aliases[("eta", "prod")]
    assert (prod.version, prod.previous, prod.action) == (3, (1,), "deployed")
    assert state.resolve("eta", "canary").version == 3 and state.resolve("eta", "v2").status == "retired"
    # The retired record alone (what compaction keeps of v2) still says everything about it.
    v2 = ModelVersion.model_validate_json(records[-1].value() or b"")
    assert v2.bundle_uri == "/bundles/eta/v2" and v2.sha256 == SHA and v2.metrics == _metrics(4.0)
    assert v2.registered_at == emitted[1].event_time
    # The topic is the one the spec describes.
    config = TopicAdmin(settings).describe(registry.topic).config
    assert config.get("cleanup.policy") == "compact"


def test_refused_actions_emit_nothing(settings: KafkaSettings) -> None:
    registry = ModelRegistry(settings)
    registry.register("eta", 1, "/bundles/eta/v1", SHA, _metrics(5.0), "regression")
    registry.register("eta", 2, "/bundles/eta/v2", SHA, _metrics(4.0), "regression")
    registry.deploy("eta", 1, "prod")
    registry.retire("eta", 2)
    end = _end_offset(registry)
    refusals: list[tuple[Callable[[], object], str]] = [
        (lambda: registry.deploy("eta", 9, "prod"), r"model 'eta' has no version 9 \(versions: v1, v2\)"),
        (lambda: registry.deploy("eta", 2, "prod"), "eta v2 is retired and cannot be deployed"),
        (lambda: registry.deploy("nope", 1, "prod"), "model 'nope' is not registered"),
        (lambda: registry.deploy("eta", 1, "prod"), "points at v1 already"),
        (lambda: registry.deploy("eta", 1, "Prod"), "expected a lowercase name"),
        (lambda: registry.rollback("eta", "prod"), "no earlier version to roll back to"),
        (lambda: registry.rollback("eta", "canary"), "has no alias 'canary'"),
        (lambda: registry.retire("eta", 1), "is what alias prod points at"),
        (lambda: registry.retire("eta", 2), "retired already"),
        (lambda: registry.register("eta", 2, "/elsewhere", SHA, {}, None), "registered already"),
        (lambda: registry.register("eta", 3, "/b", {}, {}, None), "needs bundle_uri and the sha256"),
    ]
    for action, message in refusals:
        with pytest.raises(ModelRegistryError, match=message):
            action()
    assert _end_offset(registry) == end


def test_the_state_survives_real_compaction(settings: KafkaSettings) -> None:
    registry = ModelRegistry(settings)
    # The registry topic made before the registry does, with a log cleaner that acts at once.
    fast = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.001", "min.compaction.lag.ms": "0"}
    TopicAdmin(settings).ensure([TopicSpec(registry.topic, partitions=1, compacted=True, config=fast)])
    for v in (1, 2, 3):
        registry.register("eta", v, f"/bundles/eta/v{v}", SHA, _metrics(6.0 - v), "regression")
    for v in (1, 2, 3):
        registry.deploy("eta", v, "prod")
        time.sleep(0.15)  # a segment per record or so: only closed segments are cleaned
    registry.rollback("eta", "prod")
    registry.retire("eta", 3)
    # The cleaner never touches the active segment, nor the duplicates of keys it holds: the last
    # record must roll a segment of its own (older than segment.ms) and hold a key of its own.
    time.sleep(0.15)
    registry.register("eta", 4, "/bundles/eta/v4", SHA, _metrics(1.0), "regression")
    before = registry.state()
    written, keys = 10, len(before.versions) + len(before.aliases)
    deadline = time.monotonic() + 90
    while len(read_all(registry.topic, settings)) > keys and time.monotonic() < deadline:
        time.sleep(1)
    kept = read_all(registry.topic, settings)
    assert len(kept) == keys < written, "the log cleaner did not compact the topic in 90 s"
    after = registry.state()
    assert after == before
    assert after.versions[("eta", 3)].status == "retired" and after.versions[("eta", 3)].metrics == _metrics(3.0)
    assert after.aliases[("eta", "prod")].version == 2 and after.aliases[("eta", "prod")].previous == (1,)
    # And the registry keeps working on the compacted log: roll back once more.
    assert registry.rollback("eta", "prod").version == 1


def test_records_that_are_no_model_version_are_ignored(settings: KafkaSettings) -> None:
    registry = ModelRegistry(settings)
    registry.register("eta", 1, "/bundles/eta/v1", SHA, {}, None)
    with EventProducer(settings) as producer:
        producer.send_raw(registry.topic, b"{not json", key=b"junk")
        producer.send_raw(registry.topic, b'{"event_type": "model_version"}', key=b"eta/v9")
    state = registry.state()
    assert list(state.versions) == [("eta", 1)]
    registry.deploy("eta", 1, "prod")
    assert registry.state().resolve("eta", "prod").version == 1


def _bundle(tmp_path: Path) -> tuple[str, dict[str, str]]:
    nodes = [
        {"id": "global", "parent": None, "depth": 0, "rows_train": 800, "rows_validation": 200, "trained": True,
         "serves": "global", "reason": None, "metrics": {"model": {"rmse": 4.0}}},
        {"id": "global/US", "parent": "global", "depth": 1, "rows_train": 700, "rows_validation": 150,
         "trained": True, "serves": "global/US", "reason": None, "metrics": {"model": {"rmse": 3.5}}},
        {"id": "global/US/nyc", "parent": "global/US", "depth": 2, "rows_train": 12, "rows_validation": 3,
         "trained": False, "serves": "global/US", "reason": "12 training rows, fewer than min_rows 50",
         "metrics": {}},
    ]  # fmt: skip
    manifest = {"format": 1, "model": "eta", "version": 1, "task": "regression", "partitions": {"nodes": nodes}}
    ref = write_bundle(str(tmp_path / "bundles" / "eta" / "v1"), {"nodes/global.onnx": b"onnx bytes"}, manifest)
    return ref.uri, ref.sha256


def test_cli_list_show_deploy_rollback_retire(settings: KafkaSettings, tmp_path: Path) -> None:
    registry = ModelRegistry(settings)
    uri, sha = _bundle(tmp_path)
    registry.register("eta", 1, uri, sha, _metrics(5.0), "regression")
    registry.register("eta", 2, "/missing/eta/v2", SHA, _metrics(4.0), "regression")
    registry.register("eta", 3, "/missing/eta/v3", SHA, _metrics(4.5), "regression")
    registry.register("churn", 1, "/missing/churn/v1", SHA, {"auc": 0.8, "baseline_node_mean.auc": 0.7}, "binary")
    env = {"COLUMNS": "250", "NO_COLOR": "1", "AFFRESCO_KAFKA_TOPIC_PREFIX": settings.topic_prefix}
    runner = CliRunner(env=env)

    def ok(*args: str) -> str:
        result = runner.invoke(app, ["models", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    def refused(*args: str) -> str:
        result = runner.invoke(app, ["models", *args])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        return result.output

    assert "deployed eta@prod -> v1 (new alias)" in ok("deploy", "eta", "--version", "1", "--alias", "prod")
    assert "deployed eta@prod -> v2 (was v1)" in ok(
        "deploy", "eta", "--version", "2", "--alias", "prod", "-r", "better"
    )
    rows = [json.loads(line) for line in ok("list", "--json").splitlines()]
    assert [(r["model"], r["version"], r["rank"]) for r in rows] == [
        ("churn", 1, 1), ("eta", 2, 1), ("eta", 3, 2), ("eta", 1, 3),
    ]  # fmt: skip
    eta2 = rows[1]
    assert eta2["aliases"] == ["prod"] and eta2["primary"] == "rmse" and eta2["score"] == 4.0
    assert eta2["baselines"]["baseline_node_mean"] == {"rmse": 7.0} and eta2["counts"]["rows_train"] == 800
    only = [json.loads(line)["model"] for line in ok("list", "--json", "--model", "churn").splitlines()]
    assert only == ["churn"]
    table = ok("list", "--model", "eta")
    assert "ranked by rmse" in table and "node mean rmse" in table and "prod" in table

    assert "rolled back eta@prod -> v1 (rolled back from v2)" in ok("rollback", "eta", "--alias", "prod")
    assert "no earlier version to roll back to" in refused("rollback", "eta", "--alias", "prod")
    assert "is what alias prod points at" in refused("retire", "eta", "--version", "1")
    assert "retired eta v2" in ok("retire", "eta", "--version", "2", "--reason", "worse than v1")
    assert "retired and cannot be deployed" in refused("deploy", "eta", "--version", "2", "--alias", "prod")
    assert "has no version 7" in refused("deploy", "eta", "--version", "7", "--alias", "prod")
    assert "not registered" in refused("show", "nope")

    shown = json.loads(ok("show", "eta", "--alias", "prod", "--json"))
    assert shown["record"]["version"] == 1 and shown["record"]["status"] == "registered"
    assert shown["manifest_error"] is None
    nodes = {n["id"]: n for n in shown["manifest"]["nodes"]}
    assert nodes["global/US"]["used"] is True and nodes["global/US"]["metric"] == "rmse 3.5"
    assert nodes["global/US/nyc"]["used"] is False and nodes["global/US/nyc"]["fallback"] == "global/US"
    assert "fewer than min_rows" in nodes["global/US/nyc"]["reason"]
    assert [a["alias"] for a in shown["aliases"]] == ["prod"] and shown["aliases"][0]["action"] == "rolled_back"
    text = ok("show", "eta", "--version", "1")
    assert "partition tree" in text and "fallback -> global/US" in text and "fewer than min_rows" in text
    # A bundle that cannot be read: the record still shows, the reason is given.
    missing = runner.invoke(app, ["models", "show", "eta", "--version", "2", "--json"])
    assert missing.exit_code == 0, missing.output
    missing_out = json.loads(missing.stdout)
    assert missing_out["record"]["status"] == "retired" and missing_out["manifest"] is None
    assert "cannot read manifest.json" in missing_out["manifest_error"]

    # Everything the CLI did is on the topic, and the state is its replay.
    state = registry.state()
    assert state.aliases[("eta", "prod")].version == 1 and state.versions[("eta", 2)].status == "retired"
    assert state.versions[("eta", 2)].reason == "worse than v1"
