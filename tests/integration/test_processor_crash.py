"""Crash safety: `kill -9` at random moments, restart, and the online state equals an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from processors.runtime.flow import ProcessorOptions, run_processor
from processors.runtime.sink import OutputConfig
from state.offline import read_mirror
from state.online import open_store
from streams.settings import KafkaSettings
from tests.integration.processor_helpers import (
    compile_groups,
    fields_of,
    group_docs,
    latest_times,
    produce_simulation,
    read_records,
    write_yaml,
)

pytestmark = pytest.mark.integration


def _cli(names: list[str], definitions: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "affresco.cli", "process", "run", *names,
            "-d", str(definitions), "--epoch", "0.2", "--batch-size", "1000", *extra]  # fmt: skip


def test_kill_9_and_restart_equals_an_uninterrupted_run(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    trips, pings = unique("trips"), unique("pings")
    events = produce_simulation(kafka_settings, trips, pings, n=60_000, seed=9)
    docs = group_docs(trips, pings)
    groups = compile_groups(docs)
    definitions = write_yaml(docs, tmp_path / "defs")
    names = [g.name for g in groups]

    # The reference: one uninterrupted run.
    reference_db = tmp_path / "reference" / "rocksdb"
    run_processor(
        groups,
        OutputConfig(
            kafka_settings, lambda: open_store("rocksdb", path=reference_db), None, emit_feature_updates=False
        ),
        ProcessorOptions(until_idle=True, batch_size=1000, recovery_dir=None, archive=False),
    )

    # The crashing run: SIGKILL three times at random moments, then run to the end.
    data = tmp_path / "crashing"
    env = {
        **os.environ,
        "AFFRESCO_DATA_DIR": str(data),
        "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
    }
    rnd = random.Random(1234)
    for _ in range(3):
        proc = subprocess.Popen(_cli(names, definitions), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(1.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    final = subprocess.run(
        _cli(names, definitions, "--until-idle"), env=env, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr[-3000:]

    keys = []
    for group in groups:
        latest = latest_times(group, fields_of(events, group.event_type))
        keys += [(group.ref, entity) for entity in latest]
    expected, got = read_records(reference_db, keys), read_records(data / "online" / "rocksdb", keys)
    assert all(expected[k] is not None for k in keys)

    # Whole records: version, values and the window state bytes, exactly.
    mismatches = [(k, got[k], expected[k]) for k in keys if got[k] != expected[k]]
    assert not mismatches, f"{len(mismatches)} of {len(keys)} records differ, e.g. {mismatches[:3]}"

    # The Parquet mirror is at-least-once on disk but exact when read (deduplicated).
    for group in groups:
        mirror = read_mirror(data / "offline", group.name, group.version).to_pylist()
        keys_seen = [(r["entity_key"], r["event_time"], r["kafka_partition"], r["kafka_offset"]) for r in mirror]
        assert len(keys_seen) == len(set(keys_seen))
        assert {r["entity_key"] for r in mirror} == {e for g, e in keys if g == group.ref}
