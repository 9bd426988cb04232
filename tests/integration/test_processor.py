"""The stream processor end to end on real Kafka, with each online store: values equal the reference."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.runtime.flow import ProcessorOptions, run_processor
from processors.runtime.sink import OutputConfig
from state.offline import read_mirror, read_raw
from state.online import OnlineStore, open_store
from streams.events import DeadLetter, FeatureUpdate
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.topics import Topics
from tests.integration.helpers import read_all
from tests.integration.processor_helpers import (
    compile_groups,
    fields_of,
    group_docs,
    judge,
    latest_times,
    produce_simulation,
)
from tests.reference import group_values_as_of

pytestmark = pytest.mark.integration


def _approx(values: dict[str, Any]) -> dict[str, Any]:
    return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in values.items()}


@pytest.fixture(params=["rocksdb", pytest.param("cassandra", marks=pytest.mark.cassandra)])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], OnlineStore]:
    if request.param == "rocksdb":
        path = tmp_path / "rocksdb"
        return lambda: open_store("rocksdb", path=path)
    request.getfixturevalue("cassandra_settings")
    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    return lambda: open_store("cassandra", keyspace=keyspace)


def test_processor_computes_reference_values_into_the_store(
    kafka_settings: KafkaSettings,
    unique: Callable[[str], str],
    store_factory: Callable[[], OnlineStore],
    tmp_path: Path,
) -> None:
    trips, pings = unique("trips"), unique("pings")
    events = produce_simulation(kafka_settings, trips, pings, n=4000)
    # Malformed records on the source topic: the processor must dead-letter them, not stop.
    with EventProducer(kafka_settings) as producer:
        producer.send_raw(trips, b"{not json", key="bad", headers=[("event_type", b"trip_requested")])
        producer.send_raw(trips, b'{"event_time": 5}', key="bad", headers=[("event_type", b"trip_requested")])
    groups = compile_groups(group_docs(trips, pings))
    output = OutputConfig(kafka=kafka_settings, open_store=store_factory, mirror_root=tmp_path / "offline")
    counters = run_processor(groups, output, ProcessorOptions(until_idle=True, recovery_dir=tmp_path / "recovery"))
    assert counters.dead_letters == {"malformed_json": 1, "validation_error": 1}

    rows_by_type = {g.ref: fields_of(events, g.event_type) for g in groups}
    with store_factory() as store:
        for group in groups:
            rows = rows_by_type[group.ref]
            latest = latest_times(group, rows)
            assert len(latest) > 10
            records = store.get_many([(group.ref, e) for e in latest], now_ms=latest[max(latest)][0])
            updates = _latest_feature_updates(kafka_settings, group.name)
            mirror = read_mirror(tmp_path / "offline", group.name, group.version).to_pylist()
            mirror_latest: dict[str, dict[str, Any]] = {}
            for row in mirror:
                best = mirror_latest.get(row["entity_key"])
                if best is None or (row["event_time"], row["revision"]) > (best["event_time"], best["revision"]):
                    mirror_latest[row["entity_key"]] = row
            for entity, (u, n) in latest.items():
                record = records[(group.ref, entity)]
                assert record is not None, (group.ref, entity)
                expected = group_values_as_of(group, rows, u)[entity]
                assert (record.event_time, record.revision) == (u, n)
                assert record.values == _approx(expected), (group.ref, entity)
                assert updates[entity].values == _approx(expected)
                assert updates[entity].event_time == u
                assert {k: mirror_latest[entity][k] for k in expected} == _approx(expected)

    letters = [DeadLetter.model_validate_json(m.value() or b"") for m in read_all(Topics().dlq(trips), kafka_settings)]
    assert sorted(d.reason for d in letters) == ["malformed_json", "validation_error"]
    assert all(d.source_topic == trips and d.source_offset is not None for d in letters)


def _latest_feature_updates(settings: KafkaSettings, group: str) -> dict[str, FeatureUpdate]:
    latest: dict[str, tuple[tuple[int, int], FeatureUpdate]] = {}
    for m in read_all(Topics(settings).features(group), settings):
        update = FeatureUpdate.model_validate_json(m.value() or b"")
        revision = int(dict(m.headers() or [])["revision"])
        version = (update.event_time, revision)
        if update.entity_key not in latest or version > latest[update.entity_key][0]:
            latest[update.entity_key] = (version, update)
    return {k: v for k, (_, v) in latest.items()}


def test_raw_events_are_archived(kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path) -> None:
    trips, pings = unique("trips"), unique("pings")
    events = produce_simulation(kafka_settings, trips, pings, n=1500)
    groups = compile_groups(group_docs(trips, pings))
    root = tmp_path / "offline"
    output = OutputConfig(kafka=kafka_settings, open_store=lambda: open_store("rocksdb", path=tmp_path / "db"),
                          mirror_root=root, emit_feature_updates=False)  # fmt: skip
    run_processor(groups, output, ProcessorOptions(until_idle=True, recovery_dir=tmp_path / "rec"))
    archived = read_raw(root, trips).to_pylist()
    trip_events = [e for e in events if e.type_name().startswith("trip_")]
    assert len(archived) == len(trip_events)
    assert sorted(orjson.loads(r["value"])["trip_id"] + r["event_type"] for r in archived) == sorted(
        e.trip_id + e.type_name()
        for e in trip_events  # type: ignore[attr-defined]
    )


def test_an_update_no_output_can_hold_is_dead_lettered_not_fatal(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=600)
    doc = group_docs(trips, pings)[0]
    # A string feature longer than a FeatureUpdate value may be (2,000 characters).
    doc["features"] = [*doc["features"], {"name": "long", "expr": f"concat({', '.join(['trip_id'] * 200)})"}]
    [group] = compile_groups([doc])
    output = OutputConfig(kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "db"), None)
    counters = run_processor([group], output, ProcessorOptions(until_idle=True, archive=False))
    assert counters.groups[group.ref].accepted > 0 and counters.updates > 0
    letters = [DeadLetter.model_validate_json(m.value() or b"") for m in read_all(Topics().dlq(trips), kafka_settings)]
    assert letters and all((d.reason, d.step, d.group) == ("processing_error", "produce feature update", group.ref)
                           for d in letters)  # fmt: skip
    assert "String should have at most 2000 characters" in letters[0].error
    assert not read_all(Topics(kafka_settings).features(group.name), kafka_settings)


def test_the_processor_accounts_per_topic_and_group_in_its_summary_and_metrics(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    import socket
    import urllib.request

    trips, pings = unique("trips"), unique("pings")
    events = produce_simulation(kafka_settings, trips, pings, n=2000)
    with EventProducer(kafka_settings) as producer:
        producer.send_raw(trips, b"{not json", key="bad", headers=[("event_type", b"trip_requested")])
    groups = compile_groups(group_docs(trips, pings))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    output = OutputConfig(kafka_settings, lambda: open_store("rocksdb", path=tmp_path / "db"), None)
    options = ProcessorOptions(until_idle=True, archive=False, metrics_port=port)
    summary = run_processor(groups, output, options).summary()
    trip_events = [e for e in events if e.type_name().startswith("trip_")]
    requested = sum(1 for e in trip_events if e.type_name() == "trip_requested")
    assert summary["topics"][trips]["read"] == len(trip_events) + 1
    assert summary["topics"][trips]["skipped"] == {
        kind: sum(1 for e in trip_events if e.type_name() == kind) for kind in ("trip_completed", "trip_cancelled")
    }
    assert summary["topics"][trips]["dead_lettered"] == {"malformed_json": 1}
    demand, supply = (summary["groups"][g.ref] for g in groups)
    assert demand["accepted"] == requested and demand["filtered"] == 0
    pings_n = sum(1 for e in events if e.type_name() == "driver_ping")
    assert supply["accepted"] + supply["filtered"] + supply["late"] == pings_n and supply["filtered"] > 0
    # The same counts, scraped as Prometheus metrics.
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert f'affresco_processor_records_read_total{{topic="{trips}"}} {len(trip_events) + 1}.0' in text
    assert f'affresco_processor_events_total{{group="{groups[0].ref}",outcome="accepted"}} {requested}.0' in text
    assert f'affresco_processor_dead_letters_total{{group="",reason="malformed_json",topic="{trips}"}} 1.0' in text


@pytest.mark.cassandra
def test_cassandra_holds_exactly_what_rocksdb_holds_after_the_same_run(
    kafka_settings: KafkaSettings, cassandra_settings: Any, unique: Callable[[str], str], tmp_path: Path
) -> None:
    # Busy entities (cities: thousands of revisions each, past the old cap of 999), late and
    # out-of-order events merged from other partitions: the records must be equal, byte for byte.
    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=30_000, seed=13, delayed=0.03)
    doc = {**group_docs(trips, pings)[1], "key": "city"}  # available drivers per city
    [group] = compile_groups([doc])
    keyspace = f"test_{uuid.uuid4().hex[:10]}"
    stores: dict[str, Callable[[], OnlineStore]] = {
        "rocksdb": lambda: open_store("rocksdb", path=tmp_path / "rocksdb"),
        "cassandra": lambda: open_store("cassandra", keyspace=keyspace),
    }
    for factory in stores.values():
        output = OutputConfig(kafka_settings, factory, None, emit_feature_updates=False)
        run_processor([group], output, ProcessorOptions(until_idle=True, archive=False))
    cities = sorted({str(e["city"]) for e in judge(kafka_settings, group).accepted})
    keys = [(group.ref, c) for c in cities]
    with stores["rocksdb"]() as rocks, stores["cassandra"]() as cassandra:
        in_rocksdb, in_cassandra = rocks.get_many(keys, now_ms=0), cassandra.get_many(keys, now_ms=0)
    assert all(in_rocksdb[k] is not None for k in keys)
    assert max(r.revision for r in in_rocksdb.values() if r is not None) > 999
    assert in_cassandra == in_rocksdb
