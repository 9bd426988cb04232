"""The four demo groups on bytewax and on Flink (PyFlink on a real session cluster: a JobManager and two
TaskManagers, parallelism 2), same input: every online record, every entity's latest `FeatureUpdate`
and every dead letter equal.

Real Kafka and Cassandra; the input has out-of-order events across partitions, late events and
invalid records. The Flink run goes through the CLI (`process run --engine flink`), which runs the
job in the flink venv (`make flink-venv`): PyFlink is never imported here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processors.runtime.flow import ProcessorOptions, run_processor
from processors.runtime.sink import OutputConfig
from state.online import open_store
from streams.events import DeadLetter, FeatureUpdate
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.topics import Topics
from tests.integration.helpers import read_all
from tests.integration.processor_helpers import compile_groups, demo_group_docs, produce_simulation, write_yaml

pytestmark = [pytest.mark.integration, pytest.mark.cassandra]

REPO = Path(__file__).resolve().parents[2]
AFFRESCO = Path(sys.executable).parent / "affresco"


def _latest_updates(settings: KafkaSettings, group: str) -> dict[str, tuple[int, int, FeatureUpdate]]:
    latest: dict[str, tuple[int, int, FeatureUpdate]] = {}
    for m in read_all(Topics(settings).features(group), settings):
        update = FeatureUpdate.model_validate_json(m.value() or b"")
        revision = int(dict(m.headers() or [])["revision"])
        held = latest.get(update.entity_key)
        if held is None or (update.event_time, revision) > held[:2]:
            latest[update.entity_key] = (update.event_time, revision, update)
    return latest


def _dead_letters(settings: KafkaSettings, source: str) -> list[tuple[Any, ...]]:
    records = read_all(Topics(settings).dlq(source), settings)
    letters = [DeadLetter.model_validate_json(m.value() or b"") for m in records]
    return sorted((d.source_partition, d.source_offset, d.reason, d.group or "", d.error) for d in letters)


def test_flink_computes_exactly_what_bytewax_computes(
    kafka_settings: KafkaSettings,
    cassandra_settings: Any,
    flink_cluster: Any,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=4000, seed=21, delayed=0.04)
    with EventProducer(kafka_settings) as producer:  # invalid records among them
        producer.send_raw(trips, b"{not json", key="bad", headers=[("event_type", b"trip_requested")])
        producer.send_raw(trips, b'{"event_time": 5}', key="bad", headers=[("event_type", b"trip_completed")])
        producer.send_raw(pings, b'{"x": 1}', key="bad")
    docs = demo_group_docs(trips, pings)
    groups = compile_groups(docs)
    assert len(groups) == 4
    run = uuid.uuid4().hex[:8]
    keyspaces = {"bytewax": f"test_bw_{run}", "flink": f"test_fl_{run}"}
    kafka = {engine: kafka_settings.model_copy(update={"topic_prefix": f"test.{engine}.{run}"}) for engine in keyspaces}

    output = OutputConfig(kafka["bytewax"], lambda: open_store("cassandra", keyspace=keyspaces["bytewax"]), None)
    counters = run_processor(groups, output, ProcessorOptions(until_idle=True, archive=False))
    expected = counters.summary()

    definitions = write_yaml(docs, tmp_path / "definitions")
    env = {
        **os.environ,
        **flink_cluster.env,
        "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "AFFRESCO_CASSANDRA_KEYSPACE": keyspaces["flink"],
        "AFFRESCO_CASSANDRA_PORT": str(cassandra_settings.port),
    }
    command = [
        str(AFFRESCO), "process", "run", "--engine", "flink", "--target", "cluster", "--parallelism", "2",
        "--store", "cassandra", "--until-idle", "-d", str(definitions), "--topic-prefix", kafka["flink"].topic_prefix,
        "--work-dir", str(tmp_path / "flink"), *(g.name for g in groups),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-5000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    job = flink_cluster.get(f"jobs/{summary['job_id']}")
    assert job["state"] == "FINISHED"
    assert {v["parallelism"] for v in job["vertices"]} == {2}
    hosts = {
        s["taskmanager-id"]
        for v in job["vertices"]
        for s in flink_cluster.get(f"jobs/{job['jid']}/vertices/{v['id']}/taskmanagers")["taskmanagers"]
    }
    assert len(hosts) == 2, hosts  # the subtasks ran on both TaskManagers

    for ref, counts in expected["groups"].items():
        assert counts["accepted"] > 0, ref
        got = summary["groups"][ref]
        for name in ("accepted", "filtered", "late", "dead_lettered"):
            assert got[name] == counts[name], (ref, name)
    assert sum(c["late"] for c in expected["groups"].values()) > 0  # the input has late events
    assert summary["dead_letters"] == expected["dead_letters"]
    assert {t: c["read"] for t, c in summary["topics"].items()} == {t: c["read"] for t, c in expected["topics"].items()}

    differences = []
    with (
        open_store("cassandra", keyspace=keyspaces["bytewax"]) as bytewax_store,
        open_store("cassandra", keyspace=keyspaces["flink"]) as flink_store,
    ):
        for group in groups:
            by_bytewax = _latest_updates(kafka["bytewax"], group.name)
            by_flink = _latest_updates(kafka["flink"], group.name)
            assert len(by_bytewax) > 3, group.ref
            assert by_flink.keys() == by_bytewax.keys(), group.ref
            for entity, (t, rev, update) in by_bytewax.items():
                ft, frev, fupdate = by_flink[entity]
                if (ft, frev, fupdate.values, fupdate.source_offsets) != (t, rev, update.values, update.source_offsets):
                    differences.append(("feature update", group.ref, entity))
            keys = [(group.ref, e) for e in by_bytewax]
            records, flink_records = bytewax_store.get_many(keys, now_ms=0), flink_store.get_many(keys, now_ms=0)
            for key, record in records.items():
                other = flink_records[key]
                assert record is not None, key
                if other is None or (other.event_time, other.revision, other.values, other.state) != (
                    record.event_time, record.revision, record.values, record.state,
                ):  # fmt: skip
                    differences.append(("online record", *key))
    assert differences == []

    for topic in (trips, pings):
        assert _dead_letters(kafka["flink"], topic) == _dead_letters(kafka["bytewax"], topic), topic
    assert _dead_letters(kafka["bytewax"], trips)
