"""The feature registry on a real (compacted) Kafka topic, and `affresco features` against it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affresco.cli import app
from processors.definitions import compile_spec
from processors.exceptions import RegistryError
from processors.registry import FeatureRegistry
from processors.runtime.flow import ProcessorOptions, run_processor
from processors.runtime.sink import OutputConfig
from state.online import open_store
from streams.settings import KafkaSettings
from tests.integration.processor_helpers import compile_groups, group_docs, produce_simulation, write_yaml

pytestmark = pytest.mark.integration


def _doc(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "group": "zone_demand", "version": 1, "owner": "a@x", "description": "d", "entity": "zone",
        "key": "pickup_zone", "source": {"topic": "rides.trips", "event_type": "trip_requested"},
        "features": [{"name": "n_10m", "agg": "count", "window": "10m"}],
    }  # fmt: skip
    doc.update(over)
    return doc


def _group(**over: object):  # type: ignore[no-untyped-def]
    group, problems = compile_spec(_doc(**over), "test")
    assert group is not None, problems
    return group


@pytest.fixture
def registry(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> FeatureRegistry:
    # A fresh topic prefix gives each test its own registry topic.
    return FeatureRegistry(kafka_settings.model_copy(update={"topic_prefix": unique("reg")}))


def test_apply_is_idempotent_and_semantics_are_immutable(registry: FeatureRegistry) -> None:
    assert [o.action for o in registry.apply([_group()])] == ["registered"]
    assert [o.action for o in registry.apply([_group()])] == ["unchanged"]
    # Owner and description may change in place.
    assert [o.action for o in registry.apply([_group(owner="b@x", description="new")])] == ["updated"]
    # Changing what is computed under the same version is refused, with a diff; nothing is applied.
    changed = _group(features=[{"name": "n_10m", "agg": "count", "window": "1h"}])
    other = _group(group="other")
    with pytest.raises(RegistryError) as info:
        registry.apply([other, changed])
    message = str(info.value)
    assert "zone_demand:v1" in message and "immutable" in message and "version: 2" in message
    assert "-  window: 10m" in message and "+  window: 1h" in message
    assert "other:v1" not in registry.records()
    # A new version is fine, and becomes the default.
    v2 = _group(version=2, features=[{"name": "n_10m", "agg": "count", "window": "1h"}])
    assert [o.action for o in registry.apply([v2])] == ["registered"]
    [(resolved, record)] = registry.resolve(["zone_demand"])
    assert resolved.ref == "zone_demand:v2" and record.status == "active"
    [(v1, _)] = registry.resolve(["zone_demand:v1"])
    assert v1.features[0].window is not None and v1.features[0].window.window_ms == 600_000


def test_deprecation_is_recorded_and_unknown_groups_are_clear(registry: FeatureRegistry) -> None:
    registry.apply([_group()])
    registry.deprecate("zone_demand", 1, "use zone_demand v2")
    [(_, record)] = registry.resolve(["zone_demand:v1"])
    assert record.status == "deprecated" and record.deprecation_reason == "use zone_demand v2"
    # Re-applying the same definition keeps the deprecation.
    registry.apply([_group(owner="someone else")])
    assert registry.records()["zone_demand:v1"].status == "deprecated"
    with pytest.raises(RegistryError, match="'nope' is not registered"):
        registry.resolve(["nope"])
    with pytest.raises(RegistryError, match="not registered"):
        registry.deprecate("nope", 1, "x")


def test_cli_apply_process_get(kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path) -> None:
    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=2000)
    docs = group_docs(trips, pings)
    defs = write_yaml(docs, tmp_path / "defs")
    env = {"COLUMNS": "200", "NO_COLOR": "1", "AFFRESCO_KAFKA_TOPIC_PREFIX": unique("cli"),
           "AFFRESCO_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    runner = CliRunner(env=env)
    applied = runner.invoke(app, ["features", "apply", str(defs)])
    assert applied.exit_code == 0, applied.output
    assert applied.output.count("registered") == 2
    listed = runner.invoke(app, ["features", "list"])
    assert docs[0]["group"] in listed.output
    desc = json.loads(runner.invoke(app, ["features", "describe", str(docs[0]["group"])]).output)
    assert desc["spec"]["source"]["topic"] == trips

    group = compile_groups(docs)[0]
    db = tmp_path / "data" / "online" / "rocksdb"
    run_processor([group], OutputConfig(kafka_settings, lambda: open_store("rocksdb", path=db), None),
                  ProcessorOptions(until_idle=True, archive=False))  # fmt: skip
    with open_store("rocksdb", path=db, access="read_only") as store:
        entity = next(e for g, e in [(group.ref, "lon-01"), (group.ref, "nyc-01")] if store.get(g, e))
        record = store.get(group.ref, entity)
    assert record is not None
    got = runner.invoke(app, ["features", "get", group.name, entity])
    assert got.exit_code == 0, got.output
    out = json.loads(got.output)
    assert out["values"] == record.values and out["event_time"] == record.event_time
    assert out["values_now"]["requests_10m"] == 0  # the 2026-01-01 window has long slid past
    missing = runner.invoke(app, ["features", "get", group.name, "no-such-zone"])
    assert missing.exit_code == 1 and "no values" in missing.output
    unknown = runner.invoke(app, ["features", "get", "no_such_group", "x"])
    assert unknown.exit_code == 1 and "not registered" in unknown.output
