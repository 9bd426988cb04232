"""The model registry's fold, actions and leaderboard, without Kafka (the log is a list here).

What the registry on Kafka does is `RegistryState.fold(events)`, then one `plan_*` to decide the
next event: a list of events stands in for the topic, and `compact` for what Kafka's log cleaner
leaves of it.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.exceptions import ModelRegistryError
from models.leaderboard import leaderboard
from models.registry import AliasRecord, RegistryState
from streams.events import ModelVersion
from streams.events.platform import MAX_PREVIOUS, ModelTask
from streams.schemas import render_schemas

T = 1_767_225_600_000
SHA = {"manifest.json": "a" * 64, "nodes/global.onnx": "b" * 64}


class Log:
    """An in-memory registry topic: every accepted action appends its event."""

    def __init__(self) -> None:
        self.events: list[ModelVersion] = []

    @property
    def state(self) -> RegistryState:
        return RegistryState.fold(self.events)

    def _at(self) -> int:
        return T + 1000 * len(self.events)

    def register(
        self, model: str, version: int, metrics: dict[str, float] | None = None, task: ModelTask | None = None
    ) -> ModelVersion:
        uri = f"/bundles/{model}/v{version}"
        e = self.state.plan_register(model, version, uri, SHA, metrics or {"rmse": 1.0}, task, at_ms=self._at())
        self.events.append(e)
        return e

    def deploy(self, model: str, version: int, alias: str = "prod") -> ModelVersion:
        e = self.state.plan_deploy(model, version, alias, at_ms=self._at())
        self.events.append(e)
        return e

    def rollback(self, model: str, alias: str = "prod") -> ModelVersion:
        e = self.state.plan_rollback(model, alias, at_ms=self._at())
        self.events.append(e)
        return e

    def retire(self, model: str, version: int) -> ModelVersion:
        e = self.state.plan_retire(model, version, "superseded", at_ms=self._at())
        self.events.append(e)
        return e


def compact(events: list[ModelVersion]) -> list[ModelVersion]:
    """What log compaction leaves: the last record of each key, at its place in the log."""
    last = {e.key(): i for i, e in enumerate(events)}
    return [e for i, e in enumerate(events) if last[e.key()] == i]


def test_versions_are_registered_numbered_and_resolved() -> None:
    log = Log()
    assert log.state.next_version("eta") == 1
    log.register("eta", 1)
    log.register("eta", 2, task="regression")
    log.register("churn", 1, {"auc": 0.7}, "binary")
    state = log.state
    assert state.next_version("eta") == 3 and state.next_version("churn") == 2
    assert [r.version for r in state.versions_of("eta")] == [1, 2]
    assert state.models() == ["churn", "eta"]
    v2 = state.versions[("eta", 2)]
    assert v2.status == "registered" and v2.task == "regression" and v2.registered_at == T + 1000
    assert v2.bundle_uri == "/bundles/eta/v2" and dict(v2.sha256) == SHA
    assert state.resolve("eta", "2") == v2 and state.resolve("eta", "v2") == v2 and state.resolve("eta", " V2 ") == v2
    with pytest.raises(ModelRegistryError, match=r"eta v2 is registered already .*register v3 instead"):
        log.register("eta", 2)
    assert len(log.events) == 3


def test_deploy_rollback_chain() -> None:
    log = Log()
    for v in (1, 2, 3):
        log.register("eta", v)
    first = log.deploy("eta", 1)
    assert first.key() == "eta@prod" and first.previous == []
    log.deploy("eta", 2)
    third = log.deploy("eta", 3)
    assert third.previous == [2, 1]
    assert log.state.aliases[("eta", "prod")] == AliasRecord("eta", "prod", 3, (2, 1), third.event_time, "deployed")
    assert log.state.resolve("eta", "prod").version == 3
    back = log.rollback("eta")
    assert (back.action, back.version, back.previous) == ("rolled_back", 2, [1])
    assert back.reason == "rolled back from v3"
    assert log.rollback("eta").version == 1
    with pytest.raises(ModelRegistryError, match=r"eta@prod points at v1 and has no earlier version .*models deploy"):
        log.rollback("eta")
    # Deploying a version already in the history moves it to the front; it is not kept twice.
    log.deploy("eta", 2)
    log.deploy("eta", 3)
    assert log.deploy("eta", 2).previous == [3, 1]
    with pytest.raises(ModelRegistryError, match="points at v2 already"):
        log.deploy("eta", 2)
    # Aliases are independent of each other.
    log.deploy("eta", 1, "canary")
    assert {a.alias: a.version for a in log.state.aliases_of("eta")} == {"canary": 1, "prod": 2}
    assert log.state.aliases_pointing_at("eta", 2) == ["prod"]


def test_rollback_skips_retired_versions() -> None:
    log = Log()
    for v in (1, 2, 3, 4):
        log.register("eta", v)
    for v in (1, 2, 3, 4):
        log.deploy("eta", v)
    assert log.state.aliases[("eta", "prod")].previous == (3, 2, 1)
    log.retire("eta", 3)
    log.retire("eta", 2)
    back = log.rollback("eta")
    assert (back.version, back.previous) == (1, [])
    # Nothing but retired versions behind the alias: refused, and the message says they were retired.
    log.deploy("eta", 4)
    log.retire("eta", 1)
    with pytest.raises(ModelRegistryError, match=r"no earlier version to roll back to \(v1: retired or unknown\)"):
        log.rollback("eta")


def test_retire_refuses_a_deployed_version_and_says_what_to_do() -> None:
    log = Log()
    log.register("eta", 1, {"rmse": 2.0, "baseline_node_mean.rmse": 3.0}, "regression")
    log.register("eta", 2)
    log.deploy("eta", 1, "prod")
    log.deploy("eta", 1, "shadow")
    n = len(log.events)
    with pytest.raises(ModelRegistryError) as info:
        log.retire("eta", 1)
    message = str(info.value)
    assert "alias prod, shadow points at" in message
    assert "affresco models deploy eta --version N --alias prod" in message and "rollback eta --alias prod" in message
    assert len(log.events) == n
    log.deploy("eta", 2, "prod")
    log.deploy("eta", 2, "shadow")
    retired = log.retire("eta", 1)
    # The retired record repeats everything about the version: it is the only one compaction keeps.
    assert retired.key() == "eta/v1" and retired.bundle_uri == "/bundles/eta/v1" and retired.sha256 == SHA
    assert retired.metrics == {"rmse": 2.0, "baseline_node_mean.rmse": 3.0} and retired.task == "regression"
    assert retired.registered_at == T
    record = log.state.versions[("eta", 1)]
    assert record.status == "retired" and record.retired_at == retired.event_time and record.registered_at == T
    with pytest.raises(ModelRegistryError, match="retired already"):
        log.retire("eta", 1)
    with pytest.raises(ModelRegistryError, match=r"eta v1 is retired and cannot be deployed.*\(v2\)"):
        log.deploy("eta", 1, "canary")
    with pytest.raises(ModelRegistryError, match="registered already"):
        log.register("eta", 1)


def test_unknown_models_versions_and_aliases_are_clear() -> None:
    log = Log()
    log.register("eta", 1)
    log.deploy("eta", 1)
    state = log.state
    with pytest.raises(ModelRegistryError, match=r"model 'nope' is not registered \(models: eta\)"):
        state.resolve("nope", "prod")
    with pytest.raises(ModelRegistryError, match=r"model 'eta' has no version 7 \(versions: v1\)"):
        state.resolve("eta", "v7")
    with pytest.raises(ModelRegistryError, match=r"no alias 'canary' \(aliases: prod -> v1\)"):
        state.resolve("eta", "canary")
    with pytest.raises(ModelRegistryError, match="expected a version"):
        state.resolve("eta", "Prod!")
    with pytest.raises(ModelRegistryError, match="model 'nope' is not registered"):
        state.plan_deploy("nope", 1, "prod", at_ms=T)
    with pytest.raises(ModelRegistryError, match="has no version 2"):
        state.plan_deploy("eta", 2, "prod", at_ms=T)
    with pytest.raises(ModelRegistryError, match="alias 'Prod': expected a lowercase name"):
        state.plan_deploy("eta", 1, "Prod", at_ms=T)
    with pytest.raises(ModelRegistryError, match="has no alias 'canary'"):
        state.plan_rollback("eta", "canary", at_ms=T)
    with pytest.raises(ModelRegistryError, match=r"cannot register eta v2: .*needs bundle_uri and the sha256"):
        state.plan_register("eta", 2, "/b", {}, {}, "regression", at_ms=T)
    with pytest.raises(ModelRegistryError, match=r"metrics\.r2: Input should be a finite number"):
        state.plan_register("eta", 2, "/b", SHA, {"r2": float("nan")}, "regression", at_ms=T)
    assert state.versions_of("nope") == [] and state.aliases_of("nope") == []
    assert len(log.events) == 2


def test_events_are_keyed_so_that_compaction_keeps_the_state() -> None:
    base: dict[str, object] = {"event_time": T, "model": "eta", "version": 3}
    registered = ModelVersion.model_validate({**base, "action": "registered", "bundle_uri": "/b", "sha256": SHA})
    deployed = ModelVersion.model_validate({**base, "action": "deployed", "alias": "prod", "previous": [2]})
    assert (registered.key(), deployed.key()) == ("eta/v3", "eta@prod")
    for bad in (
        {"action": "deployed"},
        {"action": "rolled_back", "alias": None},
        {"action": "registered", "sha256": SHA},
        {"action": "registered", "bundle_uri": "/b"},
        {"action": "retired", "bundle_uri": "", "sha256": SHA},
        {"action": "deployed", "alias": "prod@eu"},
        {"action": "deployed", "alias": "prod", "previous": [1] * (MAX_PREVIOUS + 1)},
        {"action": "registered", "bundle_uri": "/b", "sha256": SHA, "task": "multiclass"},
    ):
        with pytest.raises(ValidationError):
            ModelVersion.model_validate({**base, **bad})
    meta = json.loads(render_schemas()["model_version.v1.schema.json"])["x-affresco"]
    assert meta["key_field"] is None and "'<model>/v<version>'" in meta["key"] and "'<model>@<alias>'" in meta["key"]


def _random_history(seed: int, steps: int) -> list[ModelVersion]:
    """A long random history of accepted actions on two models and two aliases."""
    rng = random.Random(seed)
    log = Log()
    for _ in range(steps):
        model = rng.choice(["eta", "churn"])
        alias = rng.choice(["prod", "canary"])
        state = log.state
        versions = [r.version for r in state.versions_of(model)]
        action = rng.choice(["register", "deploy", "deploy", "rollback", "retire"])
        try:
            if action == "register" or not versions:
                log.register(model, state.next_version(model), {"rmse": rng.random()})
            elif action == "deploy":
                log.deploy(model, rng.choice(versions), alias)
            elif action == "rollback":
                log.rollback(model, alias)
            else:
                log.retire(model, rng.choice(versions))
        except ModelRegistryError:
            pass  # refused: nothing appended
    return log.events


@settings(max_examples=40, deadline=None, database=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 80))
def test_folding_the_compacted_log_gives_the_same_state(seed: int, steps: int) -> None:
    events = _random_history(seed, steps)
    compacted = compact(events)
    assert RegistryState.fold(compacted) == RegistryState.fold(events)
    # Also for a log compacted at any moment and then written on.
    cut = seed % (len(events) + 1)
    assert RegistryState.fold(compact(events[:cut]) + events[cut:]) == RegistryState.fold(events)


def test_a_long_history_is_compacted_to_one_record_per_version_and_alias() -> None:
    events = _random_history(7, 400)
    state = RegistryState.fold(events)
    assert len(compact(events)) == len(state.versions) + len(state.aliases) < len(events)
    assert any(r.status == "retired" for r in state.versions.values())
    assert any(a.action == "rolled_back" for a in state.aliases.values())
    # Invariants the actions keep: aliases point at registered versions, histories hold no duplicates.
    for a in state.aliases.values():
        assert state.versions[(a.model, a.version)].status == "registered"
        assert len(set(a.previous)) == len(a.previous) and a.version not in a.previous


def test_leaderboard_ranks_by_the_primary_metric_of_the_task() -> None:
    log = Log()
    own = {"rmse": 3.0, "mae": 2.0, "r2": 0.5, "mape": 0.1, "bias": 0.0}
    counts = {"rows_train": 900.0, "rows_validation": 100.0, "nodes": 4.0, "nodes_fallback": 1.0}
    reg = {**own, **counts, "baseline_global_mean.rmse": 5.0, "baseline_node_mean.rmse": 4.0}
    log.register("eta", 1, reg, "regression")
    log.register("eta", 2, {**reg, "rmse": 2.5}, "regression")
    log.register("eta", 3, {**reg, "rmse": 2.9}, None)  # task inferred from the metrics
    log.register("eta", 4, {"mae": 1.0}, "regression")  # no rmse: last, unranked
    log.register("churn", 1, {"auc": 0.71, "baseline_node_mean.auc": 0.6}, "binary")
    log.register("churn", 2, {"auc": 0.78}, "binary")
    log.deploy("eta", 1)
    log.deploy("eta", 3, "canary")
    log.retire("eta", 2)
    rows = leaderboard(log.state)
    assert [(r.model, r.version, r.rank) for r in rows] == [
        ("churn", 2, 1), ("churn", 1, 2), ("eta", 2, 1), ("eta", 3, 2), ("eta", 1, 3), ("eta", 4, None),
    ]  # fmt: skip
    eta = leaderboard(log.state, "eta")
    assert [r.version for r in eta] == [2, 3, 1, 4]
    best, canary, prod = eta[0], eta[1], eta[2]
    assert best.status == "retired" and best.primary == "rmse" and best.score == 2.5
    assert canary.task == "regression" and canary.aliases == ("canary",) and prod.aliases == ("prod",)
    assert prod.metrics == own
    assert prod.baselines == {"baseline_global_mean": {"rmse": 5.0}, "baseline_node_mean": {"rmse": 4.0}}
    assert prod.counts == counts
    as_json = prod.to_json()
    assert as_json["counts"]["rows_train"] == 900 and isinstance(as_json["counts"]["rows_train"], int)
    assert json.loads(json.dumps(as_json))["aliases"] == ["prod"]
    with pytest.raises(ModelRegistryError, match="model 'nope' is not registered"):
        leaderboard(log.state, "nope")
