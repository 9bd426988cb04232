"""Crash safety: `kill -9` at random moments (the first one right at start-up), restart, and every output
equals what an uninterrupted run gives — on a log with out-of-order and late events."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from processors.engine import HOUR_MS
from processors.runtime.flow import ProcessorOptions, run_processor
from processors.runtime.sink import OutputConfig
from state.offline import read_mirror
from state.online import open_store
from streams.admin import TopicAdmin
from streams.events import FeatureUpdate
from streams.settings import KafkaSettings
from streams.topics import Topics
from tests.integration.helpers import read_all
from tests.integration.processor_helpers import (
    compile_groups,
    group_docs,
    judge,
    latest_times,
    produce_simulation,
    read_records,
    write_yaml,
)
from tests.reference import group_values_as_of

pytestmark = pytest.mark.integration


def _cli(names: list[str], definitions: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "affresco.cli", "process", "run", *names,
            "-d", str(definitions), "--epoch", "0.2", "--batch-size", "1000", *extra]  # fmt: skip


def test_kill_9_and_restart_equals_an_uninterrupted_run(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    trips, pings = unique("trips"), unique("pings")
    produce_simulation(kafka_settings, trips, pings, n=60_000, seed=9, delayed=0.03)
    docs = group_docs(trips, pings)
    groups = compile_groups(docs)
    definitions = write_yaml(docs, tmp_path / "defs")
    names = [g.name for g in groups]
    judged = {g.ref: judge(kafka_settings, g) for g in groups}

    # The reference: one uninterrupted run.
    reference_db = tmp_path / "reference" / "rocksdb"
    counters = run_processor(
        groups,
        OutputConfig(
            kafka_settings, lambda: open_store("rocksdb", path=reference_db), None, emit_feature_updates=False
        ),
        ProcessorOptions(until_idle=True, batch_size=1000, recovery_dir=None, archive=False),
    )
    for group in groups:  # late by the definition (of the events the filter keeps), not by timing
        expected_late = [f for f in judged[group.ref].late.values() if group.filter is None or group.filter.evaluate(f)]
        assert counters.groups[group.ref].late == len(expected_late) > 0, group.ref

    # The crashing run: SIGKILL right at start-up (the recovery store being created), then three times
    # at random moments, then run to the end.
    data = tmp_path / "crashing"
    env = {
        **os.environ,
        "AFFRESCO_DATA_DIR": str(data),
        "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
    }
    rnd = random.Random(1234)
    for pause in [0.015, *(rnd.uniform(1.5, 4.0) for _ in range(3))]:
        proc = subprocess.Popen(_cli(names, definitions), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    final = subprocess.run(
        _cli(names, definitions, "--until-idle"), env=env, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr[-3000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    assert set(summary["groups"]) == {g.ref for g in groups}

    keys = []
    for group in groups:
        keys += [(group.ref, entity) for entity in latest_times(group, judged[group.ref].accepted)]
    expected, got = read_records(reference_db, keys), read_records(data / "online" / "rocksdb", keys)
    assert all(expected[k] is not None for k in keys)

    # Whole records: version, values and the window state bytes, exactly.
    mismatches = [(k, got[k], expected[k]) for k in keys if got[k] != expected[k]]
    assert not mismatches, f"{len(mismatches)} of {len(keys)} records differ, e.g. {mismatches[:3]}"

    for group in groups:
        accepted = judged[group.ref].accepted
        _check_history(group, accepted, read_mirror(data / "offline", group.name, group.version).to_pylist())
        _check_feature_updates(kafka_settings, group, got)
    # What killed writers left half-written is gone; the feature topics were made to their spec.
    assert not list((data / "offline").glob("**/.part-*.tmp"))
    described = TopicAdmin(kafka_settings).describe(Topics(kafka_settings).features(groups[0].name))
    assert len(described.partitions) == 4 and described.config.get("retention.ms") == "-1"


def _check_history(group: Any, accepted: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """One row per entity and event hour with accepted events, each the definition's value as of its time."""
    kept = [f for f in accepted if group.filter is None or group.filter.evaluate(f) is True]
    hours: dict[tuple[str, int], int] = {}
    for f in kept:
        key = (str(group.key.evaluate(f)), f["event_time"] // HOUR_MS)
        hours[key] = max(hours.get(key, -1), f["event_time"])
    assert sorted((r["entity_key"], r["event_time"]) for r in rows) == sorted((e, u) for (e, _), u in hours.items())
    by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in kept:
        by_entity[str(group.key.evaluate(f))].append(f)
    for row in random.Random(7).sample(rows, min(len(rows), 120)):
        entity, t = row["entity_key"], row["event_time"]
        expected = group_values_as_of(group, by_entity[entity], t)[entity]
        assert {k: row[k] for k in expected} == expected, (group.ref, entity, t)
        assert row["revision"] == sum(1 for f in by_entity[entity] if f["event_time"] <= t)
        assert row["written_by"] == "stream"


def _check_feature_updates(settings: KafkaSettings, group: Any, online: dict[Any, Any]) -> None:
    """At-least-once, but (entity, source_offsets) identifies an update's content exactly."""
    contents: dict[tuple[str, str], set[str]] = defaultdict(set)
    latest: dict[str, tuple[tuple[int, int], FeatureUpdate]] = {}
    for m in read_all(Topics(settings).features(group.name), settings):
        update = FeatureUpdate.model_validate_json(m.value() or b"")
        contents[(update.entity_key, json.dumps(update.source_offsets, sort_keys=True))].add(
            json.dumps(update.values, sort_keys=True)
        )
        version = (update.event_time, int(dict(m.headers() or [])["revision"]))
        if update.entity_key not in latest or version > latest[update.entity_key][0]:
            latest[update.entity_key] = (version, update)
    assert all(len(values) == 1 for values in contents.values())
    for entity, (_, update) in latest.items():
        record = online[(group.ref, entity)]
        assert record is not None and update.values == record.values and update.event_time == record.event_time
