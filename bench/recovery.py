"""Benchmark: stream-processor recovery under load, `kill -9` → restarted → caught up, and where the time goes.

On fresh topics (4 partitions, kept forever) a producer process sends simulated marketplace events at
a steady `--rate` with live event times (the simulator's events, re-stamped with the wall clock as
they go out: the simulator's own clock runs ~3,000x faster than the wall at 5,000 events/s, which
would put event times hours ahead). `affresco process run` follows the four demo groups
(`processors/features/rides/*.yaml`, reading the fresh topics; `AFFRESCO_DATA_DIR` in a temporary
directory, RocksDB, mirror on, outputs under a fresh topic prefix) as a subprocess. `--run-s`
seconds after each (re)start (plus a seeded jitter of up to one epoch, so that kills land at every
phase of the snapshot cycle; and never less than 5 s after it caught up, so that the lag before a
kill is a steady one) it is killed with SIGKILL and restarted at once, `--kills` times per
`--epochs` value. Medians and maxima are over those kills; the cold start and the probed restarts
(below) are reported beside them.

What is observed, and how (nothing is added to the processor):

- The clock: the feature-update topics are created here, before the processor starts, with
  `message.timestamp.type=LogAppendTime` (the processor keeps existing topics), so each
  `FeatureUpdate` record carries the broker's append time: when the processor's output reached
  Kafka, independent of how late this benchmark's consumer reads it. Restart time 0 is the
  `Popen` of the restarted process (CLOCK_MONOTONIC; wall and monotonic clocks are paired there).
- Old and new output: right after the kill the high watermarks of the feature-update topics are
  read; records at or beyond them were written by the restarted process.
- `processed before the kill` (per source partition): the greatest `source_offset` among the old
  process's `FeatureUpdate`s (what had reached Kafka when it died).
- `resume offsets`: the next offset of each source partition in the recovery snapshot the restart
  resumes from, read from bytewax's recovery store (`part-0.sqlite3`, latest snapshot at or before
  the last committed epoch; checked against the offsets the probed restart is handed).
- `first_output_s`: the first `FeatureUpdate` of the restarted process (a replayed one): the
  dataflow is built, has resumed and writes again.
- `first_new_output_s`: its first `FeatureUpdate` with a source offset beyond what the old process
  had processed on that partition; `replay_done_s`: every source partition is past that point.
- `caught_up_s`: every source partition has an output with `source_offset ≥ high watermark - 1`,
  the high watermarks read right after the restart: the processor has consumed all that was in
  the topics when it restarted. Exact up to the records no group accepts (cancelled trips,
  non-available pings) at the very end of a partition: then the next accepted record (ms later at
  this rate) marks it. The end-to-end lag of the output at that moment is reported next to the
  steady-state lag (broker append time - event time of the 5 s before the kill).
- `events_replayed`: Σ over source partitions of (processed before the kill + 1 - resume offset):
  records the old process had already turned into output and the new one reads again (0 when the
  kill lands while the old process was writing a snapshot: its input waits for the epoch to be
  committed, so nothing beyond the snapshot had been output);
  `events_to_read` adds those produced while it was down and restarting (high watermark - resume
  offset).

Breakdown: `python -X importtime -m affresco.cli process run --help` (and the processor's lazily
imported runtime), and `--probe-restarts` extra restarts per epoch value that run the same CLI under
a stdlib-only probe (`python -c`), which stamps the processor's own functions as they run: imports,
CLI and group resolution, output topics, dataflow build, recovery-store preparation, bytewax's start
(recovery store open and resume-state load: from `cli_main` to the first partition built), source
partitions built (Kafka consumer created and assigned at the resumed offset), shard state restored
(`ShardLogic` unpickling its snapshot), online store opened, first records fetched, first output
written, then replay and catch-up as observed outside.

Target (issue): restart → caught up < 5 s. No timed assertion: the figures are printed, with
`target_met`. Prints one JSON line. Needs a running broker (`affresco infra up`).

    python -m bench.recovery [--rate 5000] [--run-s 20] [--kills 3] [--epochs 5,1] [--probe-restarts 1]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing as mp
import os
import pickle
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from bench._machine import machine
from streams.admin import TopicAdmin, TopicSpec, watermarks
from streams.settings import KafkaSettings
from streams.sim import DRIVER_PINGS_TOPIC, TRIPS_TOPIC, topic_for
from streams.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "processors" / "features" / "rides"
PARTITIONS = 4
TARGET_S = 5.0
STEADY_WINDOW_S = 5.0


# -- the workload ------------------------------------------------------------------------------------


def demo_docs(trips: str, pings: str) -> list[dict[str, Any]]:
    """The demo groups' YAML documents, reading the fresh topics (names and TTLs as the demo has them:
    event times are live, so the demo's TTLs hold)."""
    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    docs = []
    for path in sorted(DEMO_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["source"]["topic"] = rename[doc["source"]["topic"]]
        docs.append(doc)
    return docs


def _producer_main(
    bootstrap: str, trips: str, pings: str, rate: float, seed: int, pool_size: int, ready: Any, stop: Any, sent: Any
) -> None:
    """A separate process: simulated events at `rate` per second, re-stamped with the wall clock.

    A pool of simulated events is generated first (the simulator costs ~45 µs an event, a third of a
    core at 5,000/s) and cycled; each send sets `event_time` to now (never decreasing) and keeps a
    completed or cancelled trip's `requested_at` the same distance before it.
    """
    from itertools import islice

    from streams.producer import EventProducer, event_headers
    from streams.sim.generator import Simulator

    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    pool = []
    for e in islice(Simulator(seed, start_ms=time.time_ns() // 1_000_000), pool_size):
        body = e.model_dump(mode="json")
        back = body["event_time"] - body["requested_at"] if "requested_at" in body else None
        pool.append((rename[topic_for(e)], e.key(), event_headers(type(e)), body, back))
    producer = EventProducer(KafkaSettings(bootstrap_servers=bootstrap))
    ready.set()
    begin = time.monotonic()
    n = last = 0
    size = len(pool)
    while not stop.is_set():
        due = int((time.monotonic() - begin) * rate)
        while n < due:
            topic, key, headers, body, back = pool[n % size]
            now = max(time.time_ns() // 1_000_000, last)
            last = now
            body = {**body, "event_time": now}
            if back is not None:
                body["requested_at"] = now - back
            producer.send_raw(topic, orjson.dumps(body), key=key, headers=headers, timestamp_ms=now)
            n += 1
        sent.value = n
        producer.poll(0)
        time.sleep(0.002)
    producer.flush(30)
    sent.value = n


# -- observing the processor's output ---------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    """One FeatureUpdate as observed: where it is, when the broker appended it, what it came from."""

    at: float  # broker append time, on this process's monotonic clock
    seen: float  # when this benchmark read it (monotonic)
    fpart: tuple[str, int]  # feature-update topic and partition
    foffset: int
    source: tuple[str, int]  # source topic and partition
    source_offset: int
    lag_ms: int  # append time - event time


class Observer(threading.Thread):
    """Reads every FeatureUpdate of the run's feature-update topics from the beginning."""

    def __init__(self, settings: KafkaSettings, topics: list[str], wall_minus_mono: float) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                **settings.client_config(),
                "group.id": f"bench-recovery-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self.consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(PARTITIONS)])
        self.offset = wall_minus_mono
        self.out: deque[Update] = deque()
        self.stopping = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                msgs = self.consumer.consume(2000, 0.02)
                seen = time.monotonic()
                for m in msgs:
                    if m.error() is not None:
                        continue
                    body = orjson.loads(m.value() or b"{}")
                    append_ms = m.timestamp()[1]
                    self.out.append(
                        Update(
                            at=append_ms / 1000 - self.offset,
                            seen=seen,
                            fpart=(m.topic() or "", m.partition() or 0),
                            foffset=m.offset() or 0,
                            source=(body["source_topic"], body["source_partition"]),
                            source_offset=body["source_offset"],
                            lag_ms=append_ms - body["event_time"],
                        )
                    )
        except Exception as exc:  # reported in the result, never silently
            self.error = repr(exc)
        finally:
            self.consumer.close()

    def drain(self) -> list[Update]:
        out = []
        while self.out:
            out.append(self.out.popleft())
        return out


# -- Kafka and recovery-store reads ------------------------------------------------------------------


class Offsets:
    """High watermarks of many partitions, read with one consumer kept connected."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.consumer = Consumer({**settings.client_config(), "group.id": f"bench-recovery-hw-{uuid.uuid4().hex[:8]}"})

    def high(self, parts: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        return {tp: watermarks(self.consumer, TopicPartition(*tp), 10)[1] for tp in parts}

    def close(self) -> None:
        self.consumer.close()


def resume_offsets(recovery_dir: Path) -> dict[str, Any]:
    """The source offsets a restart resumes from: bytewax's latest snapshot of each source partition at
    or before the last committed epoch (`commits`), and how big the store is."""
    from processors.runtime.source import SourceResume  # noqa: F401  (unpickling needs the class)

    db = recovery_dir / "part-0.sqlite3"
    started = time.perf_counter()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        commit = con.execute("SELECT max(commit_epoch) FROM commits").fetchone()[0]
        rows = con.execute(
            "SELECT step_id, state_key, max(snap_epoch), ser_change FROM snaps "
            "WHERE step_id LIKE '%.kafka' AND snap_epoch <= ? GROUP BY step_id, state_key",
            (commit if commit is not None else -1,),
        ).fetchall()
        states = con.execute(
            "SELECT count(*), coalesce(sum(length(ser_change)), 0) FROM snaps WHERE step_id LIKE '%.aggregate'"
        ).fetchone()
    finally:
        con.close()
    offsets: dict[tuple[str, int], int] = {}
    for _, key, _, blob in rows:
        if blob is None:
            continue
        value = pickle.loads(blob)
        index, topic = key.split("-", 1)
        offsets[(topic, int(index))] = value if isinstance(value, int) else value.offset
    return {
        "commit_epoch": commit,
        "offsets": offsets,
        "read_ms": round((time.perf_counter() - started) * 1000, 1),
        "db_mb": round(sum(p.stat().st_size for p in recovery_dir.glob("part-0.sqlite3*")) / 2**20, 2),
        "state_snapshot_rows": states[0],
        "state_snapshot_mb": round(states[1] / 2**20, 2),
    }


def state_costs(recovery_dir: Path) -> dict[str, Any]:
    """What restoring and snapshotting the shard state costs, measured here on the store's latest
    snapshots once the processor has stopped (a quiet re-measure of what the probe sees in situ):
    bytewax's pickle of each shard's bytes, and `ShardLogic`'s own pickle of its `GroupState`s."""
    import processors.runtime.logic  # noqa: F401  (unpickling needs the engine's classes)

    db = recovery_dir / "part-0.sqlite3"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        started = time.perf_counter()
        rows = con.execute(
            "SELECT s.ser_change FROM snaps s JOIN (SELECT step_id, state_key, max(snap_epoch) AS e FROM snaps "
            "WHERE step_id LIKE '%.aggregate' GROUP BY step_id, state_key) l "
            "ON s.step_id = l.step_id AND s.state_key = l.state_key AND s.snap_epoch = l.e"
        ).fetchall()
        read_s = time.perf_counter() - started
    finally:
        con.close()
    blobs = [r[0] for r in rows if r[0] is not None]
    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(50_000, 20, 1000)  # what run_processor sets before bytewax restores the state
        started = time.perf_counter()
        inner = [pickle.loads(b) for b in blobs]
        outer_s = time.perf_counter() - started
        started = time.perf_counter()
        states = [pickle.loads(b) for b in inner]
        unpickle_s = time.perf_counter() - started
        started = time.perf_counter()
        for st in states:
            pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)
        pickle_s = time.perf_counter() - started
        del states
        gc.collect()
        gc.disable()  # the same restore with the collector paused
        started = time.perf_counter()
        states = [pickle.loads(b) for b in inner]
        paused_s = time.perf_counter() - started
    finally:
        gc.enable()
        gc.set_threshold(*thresholds)
    entities = sum(len(getattr(g, "entities", {}) or {}) for st in states for g in st.values())
    return {
        "shards": len(blobs),
        "mb": round(sum(len(b) for b in inner) / 2**20, 2),
        "entities": entities or None,
        "sqlite_read_s": round(read_s, 3),
        "bytewax_unpickle_s": round(outer_s, 3),
        "state_unpickle_s": round(unpickle_s, 3),
        "state_unpickle_gc_paused_s": round(paused_s, 3),
        "state_pickle_s": round(pickle_s, 3),
    }


# -- the probe: the same CLI, with time stamps ---------------------------------------------------------

# Runs as `python -c PROBE <marks file> <affresco args…>`: stdlib only before the CLI's own imports, so
# it adds nothing to what it measures. Each mark is a JSON line (CLOCK_MONOTONIC, shared by processes).
PROBE = r"""
import json, sys, time
_out = open(sys.argv[1], "a", buffering=1)
def mark(name, **kw):
    _out.write(json.dumps({"mark": name, "t": time.monotonic(), "cpu": time.process_time(), **kw}) + "\n")
mark("python_up")
import affresco.cli
mark("cli_imported")
import processors.runtime.flow as flow
import processors.runtime.logic as logic
import processors.runtime.shards as shards
import processors.runtime.sink as sink
import processors.runtime.source as source
mark("runtime_imported")

def timed(owner, attr, name, detail=None):
    orig = getattr(owner, attr)
    def wrapper(*args, **kwargs):
        t, c = time.monotonic(), time.process_time()
        result = orig(*args, **kwargs)
        mark(name, start=t, start_cpu=c, **(detail(args, result) if detail else {}))
        return result
    setattr(owner, attr, wrapper)

def _entered(owner, attr, name):
    orig = getattr(owner, attr)
    def wrapper(*args, **kwargs):
        mark(name)
        return orig(*args, **kwargs)
    setattr(owner, attr, wrapper)

_entered(flow, "run_processor", "run_processor")
timed(flow, "_ensure_output_topics", "output_topics")
timed(flow, "remove_stale_temporaries", "stale_temporaries")
timed(flow, "build_flow", "build_flow")
timed(flow, "prepare_recovery", "prepare_recovery")
_entered(flow, "cli_main", "cli_main")
def _resume(args, result):
    r = args[3]
    return {"part": args[2], "resume": None if r is None else (r if isinstance(r, int) else r.offset)}
timed(source.PollingKafkaSource, "build_part", "source_part", _resume)
timed(sink.ProcessorSink, "build_part", "sink_part")
_init = logic.ShardLogic.__init__
def _logic_init(self, engines, partitions, resume):
    t, c = time.monotonic(), time.process_time()
    _init(self, engines, partitions, resume)
    mark("shard_state", start=t, start_cpu=c, bytes=0 if resume is None else len(resume))
logic.ShardLogic.__init__ = _logic_init
_snap = logic.ShardLogic.snapshot
def _logic_snapshot(self):
    t = time.monotonic()
    blob = _snap(self)
    mark("shard_snapshot", start=t, bytes=len(blob))
    return blob
logic.ShardLogic.snapshot = _logic_snapshot
_next = source._Partition.next_batch
_fetched = set()
def _next_batch(self):
    out = _next(self)
    if out and self._where not in _fetched:
        _fetched.add(self._where)
        mark("first_records", part=self._where, offset=self._offset)
    return out
source._Partition.next_batch = _next_batch
def _first(owner, attr, name, when=lambda args: True):
    orig = getattr(owner, attr)
    done = []
    def wrapper(*args, **kwargs):
        if done or not when(args):
            return orig(*args, **kwargs)
        done.append(1)
        t = time.monotonic()
        result = orig(*args, **kwargs)
        mark(name, start=t)
        return result
    setattr(owner, attr, wrapper)
_first(shards.ShardRouter, "__call__", "first_route", lambda a: any(p.read for p in a[1]))
_first(logic.ShardLogic, "on_batch", "first_apply", lambda a: any(b.rows for b in a[1]))
_first(sink._Partition, "write_batch", "first_output", lambda a: any(getattr(v, "updates", None) for v in a[1]))
timed(sink._Partition, "snapshot", "sink_snapshot")
timed(source._Partition, "snapshot", "source_snapshot")
sys.argv = ["affresco", *sys.argv[2:]]
affresco.cli.main()
"""


def read_marks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    marks = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut by the kill
            marks.append(json.loads(line))
    return marks


def breakdown(
    marks: list[dict[str, Any]], t0: float, observed: dict[str, float | None], cpu_end: float
) -> dict[str, Any]:
    """Phases of one probed restart from its marks (t0: the Popen): wall and CPU seconds of each.

    `observed`: the restart's milestones seen on the feature-update topics (seconds after t0);
    `cpu_end`: the processor's CPU seconds when it had caught up.
    """

    def first(name: str) -> dict[str, Any] | None:
        return next((m for m in marks if m["mark"] == name), None)

    def every(name: str) -> list[dict[str, Any]]:
        return [m for m in marks if m["mark"] == name]

    built = every("source_part") + every("shard_state") + every("sink_part")
    fetched = every("first_records")
    # Points in time (wall after t0, CPU seconds of the processor), in the order they happen.
    points: list[tuple[str, float | None, float | None]] = [("popen", 0.0, 0.0)]
    for name in ("python_up", "cli_imported", "runtime_imported", "run_processor", "cli_main"):
        m = first(name)
        points.append((name, None if m is None else m["t"] - t0, None if m is None else m["cpu"]))
    if built:
        start = min(built, key=lambda m: m["start"])
        end = max(built, key=lambda m: m["t"])
        points.append(("first_part_building", start["start"] - t0, start["start_cpu"]))
        points.append(("all_parts_built", end["t"] - t0, end["cpu"]))
    if fetched:
        m = min(fetched, key=lambda m: m["t"])
        points.append(("first_records_fetched", m["t"] - t0, m["cpu"]))
    m = first("first_output")
    points.append(("first_output_written", None if m is None else m["t"] - t0, None if m is None else m["cpu"]))
    points.append(("replay_done_observed", observed.get("replay_done_s"), None))
    points.append(("caught_up_observed", observed.get("caught_up_s"), cpu_end))
    labels = {
        "python_up": "process_start_and_interpreter",
        "cli_imported": "imports_affresco_cli",
        "runtime_imported": "imports_processor_runtime",
        "run_processor": "cli_settings_and_group_definitions",
        "cli_main": "output_topics_build_flow_prepare_recovery",
        "first_part_building": "bytewax_start_and_recovery_store_read",
        "all_parts_built": "parts_built_consumers_assigned_state_unpickled_store_opened",
        "first_records_fetched": "first_fetch_after_assign",
        "first_output_written": "first_polls_routed_applied_written",
        "replay_done_observed": "replay_of_the_epoch_since_the_snapshot",
        "caught_up_observed": "catch_up_on_what_arrived_while_down",
    }
    phases = []
    prev_t, prev_cpu = 0.0, 0.0
    for name, t, cpu in points[1:]:
        if t is None:
            continue
        t = max(t, prev_t)  # an observed milestone can fall a few ms before the write that made it
        phase: dict[str, Any] = {"phase": labels[name], "until_s": round(t, 3), "wall_s": round(t - prev_t, 3)}
        if cpu is not None and cpu == cpu:
            phase["cpu_s"] = round(cpu - prev_cpu, 3)
            prev_cpu = cpu
        phases.append(phase)
        prev_t = t

    def span(name: str) -> float:
        return round(sum(m["t"] - m["start"] for m in every(name)), 3)

    states = every("shard_state")
    snaps = every("sink_snapshot")
    return {
        "phases": phases,
        "within_phases_s": {
            "output_topics_ensured": span("output_topics"),
            "stale_parquet_temporaries": span("stale_temporaries"),
            "build_flow": span("build_flow"),
            "prepare_recovery": span("prepare_recovery"),
            "source_parts_built_consumers_assigned": span("source_part"),
            "shard_state_unpickled": span("shard_state"),
            "online_store_and_producer_opened": span("sink_part"),
            "first_route": span("first_route"),
            "first_apply": span("first_apply"),
            "first_write_with_updates": span("first_output"),
        },
        "source_parts": len(every("source_part")),
        "resume_offsets_handed": {m["part"]: m["resume"] for m in every("source_part")},
        "shard_states": len(states),
        "shard_state_mb": round(sum(m["bytes"] for m in states) / 2**20, 2),
        "all_partitions_fetched_s": round(max(m["t"] for m in fetched) - t0, 3) if fetched else None,
        # When the restarted process's epochs closed (its sink snapshots ended), seconds after t0.
        "epoch_snapshots_s": [round(m["t"] - t0, 2) for m in snaps[:8]],
        "shard_snapshot_ms_per_epoch": _per_epoch(marks),
    }


def _per_epoch(marks: list[dict[str, Any]]) -> float | None:
    """Mean time all shards spend pickling their state at one epoch (steady state, once resumed)."""
    snaps = [m for m in marks if m["mark"] == "shard_snapshot"]
    epochs = sum(1 for m in marks if m["mark"] == "sink_snapshot")
    if not snaps or not epochs:
        return None
    return round(sum(m["t"] - m["start"] for m in snaps) / epochs * 1000, 1)


def _r(x: float | None) -> float | None:
    return None if x is None or x != x else round(x, 3)


# -- import times ----------------------------------------------------------------------------------


def import_times(python: str, env: dict[str, str]) -> dict[str, Any]:
    """`python -X importtime -m affresco.cli process run --help`, the lazily imported runtime on top,
    and the wall times of a bare interpreter and of the `--help` run."""

    def wall(cmd: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, check=True)
        return time.perf_counter() - started

    def parse(stderr: str) -> list[tuple[int, int, str]]:
        rows = []
        for line in stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                rows.append((int(m[2]), len(m[3]) // 2, m[4]))
        return rows

    bare = min(wall([python, "-c", "pass"]) for _ in range(3))
    help_wall = min(wall([python, "-m", "affresco.cli", "process", "run", "--help"]) for _ in range(3))
    cli = subprocess.run(
        [python, "-X", "importtime", "-m", "affresco.cli", "process", "run", "--help"],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = parse(cli.stderr)
    runtime = subprocess.run(
        [python, "-X", "importtime", "-c",
         "import affresco.cli; import processors.runtime.flow, processors.runtime.sink, state.rocksdb"],
        env=env, cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    both = parse(runtime.stderr)
    total_cli = sum(us for us, depth, _ in rows if depth == 0) / 1e6
    total_both = sum(us for us, depth, _ in both if depth == 0) / 1e6
    # The heaviest modules imported by the CLI, and those `process run` imports on top (to depth 2).
    heavy = sorted(((us, name) for us, depth, name in rows if depth <= 1), reverse=True)[:12]
    after_cli = {name for _, _, name in rows}
    extra = sorted(
        ((us, n) for us, d, n in both if d <= 2 and n not in after_cli and n != "affresco.cli"), reverse=True
    )
    return {
        "bare_python_wall_s": round(bare, 3),
        "process_run_help_wall_s": round(help_wall, 3),
        "cli_imports_s": round(total_cli, 3),
        "cli_heaviest_ms": {name: round(us / 1000) for us, name in heavy},
        "runtime_imports_on_top_s": round(total_both - total_cli, 3),
        "runtime_heaviest_ms": {name: round(us / 1000) for us, name in extra[:10]},
    }


# -- one series (one --epoch value) ----------------------------------------------------------------


@dataclass
class Cycle:
    """One restart: what was known at the kill and at the restart, and the restarted process's output."""

    kind: str  # cold | plain | probed
    t0: float
    targets: dict[tuple[str, int], int]  # source high watermarks right after the restart, minus one
    kill_hwm: dict[tuple[str, int], int] = field(default_factory=dict)  # feature topics, at the kill
    processed: dict[tuple[str, int], int] = field(default_factory=dict)  # old output's max source offset
    resume: dict[str, Any] | None = None
    new: list[Update] = field(default_factory=list)
    reached: dict[tuple[str, int], float] = field(default_factory=dict)  # source part -> target reached at
    marks: Path | None = None
    steady_lag_ms: dict[str, float] = field(default_factory=dict)
    cpu0: tuple[float, float] = (0.0, 0.0)
    reads_done_s: float = 0.0  # Popen -> this benchmark's own reads of offsets and recovery store done

    def is_new(self, u: Update) -> bool:
        # Beyond the feature topics' marks read after the kill, and appended after those reads: the
        # restarted process cannot write before its imports (> 1 s), while a record the killed one had
        # already sent could land a moment after its death.
        return u.foffset >= self.kill_hwm.get(u.fpart, 0) and u.at > self.t0 + self.reads_done_s

    def feed(self, u: Update) -> None:
        self.new.append(u)
        target = self.targets.get(u.source)
        if target is not None and u.source not in self.reached and u.source_offset >= target:
            self.reached[u.source] = u.at

    @property
    def caught_up(self) -> bool:
        return all(p in self.reached for p in self.targets)


def _machine_cpu() -> tuple[float, float]:
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    return float(sum(parts) - parts[3] - parts[4]), float(sum(parts))


def _proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return float("nan")


class Series:
    """One `--epoch` value: fresh topics, a producer, the processor killed and restarted."""

    def __init__(self, settings: KafkaSettings, args: argparse.Namespace, epoch: float, rnd: random.Random) -> None:
        self.settings, self.args, self.epoch, self.rnd = settings, args, epoch, rnd
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.trips, self.pings = f"bench.recovery.{tag}.trips", f"bench.recovery.{tag}.pings"
        self.prefix = f"benchrec{tag}"
        self.work = Path(tempfile.mkdtemp(prefix="affresco-bench-recovery-"))
        self.docs = demo_docs(self.trips, self.pings)
        self.names = sorted(d["group"] for d in self.docs)
        self.sources = [(t, p) for t in (self.trips, self.pings) for p in range(PARTITIONS)]
        self.feature_topics = [Topics(settings.model_copy(update={"topic_prefix": self.prefix})).features(n)
                               for n in self.names]  # fmt: skip
        self.fparts = [(t, p) for t in self.feature_topics for p in range(PARTITIONS)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.work / "processor.log"
        self.max_source_offset: dict[tuple[str, int], int] = {}  # over all output seen so far
        self.steady: deque[Update] = deque()
        self.kept: str | None = None

    # topics, producer, processor --------------------------------------------------------------------
    def create_topics(self) -> None:
        append_time = {"message.timestamp.type": "LogAppendTime"}
        TopicAdmin(self.settings).ensure(
            [TopicSpec(t, partitions=PARTITIONS, retention_ms=-1) for t in (self.trips, self.pings)]
            + [TopicSpec(t, partitions=PARTITIONS, retention_ms=-1, config=append_time) for t in self.feature_topics]
        )

    def command(self, probe: Path | None) -> list[str]:
        definitions = self.work / "definitions"
        if not definitions.exists():
            definitions.mkdir()
            for doc in self.docs:
                (definitions / f"{doc['group']}.yaml").write_text(yaml.safe_dump(doc))
        cli = ["process", "run", *self.names, "-d", str(definitions), "--epoch", str(self.epoch)]
        if not self.args.mirror:
            cli.append("--no-mirror")
        if probe is None:
            return [sys.executable, "-m", "affresco.cli", *cli]
        return [sys.executable, "-c", PROBE, str(probe), *cli]

    def start(self, probe: Path | None) -> float:
        env = {
            **os.environ,
            "AFFRESCO_DATA_DIR": str(self.work / "data"),
            "AFFRESCO_KAFKA_TOPIC_PREFIX": self.prefix,
            "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
            "AFFRESCO_ONLINE_STORE": "rocksdb",
        }
        cmd = self.command(probe)
        log = self.log.open("ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work, start_new_session=True
        )
        log.close()
        return t0

    def recovery_dir(self) -> Path:
        runs = list((self.work / "data" / "processors").glob("*/recovery-v*"))
        if len(runs) != 1:
            msg = f"expected one recovery store under {self.work / 'data' / 'processors'}, found {runs}"
            raise RuntimeError(msg)
        return runs[0]

    def alive_or_fail(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            msg = f"the processor exited with {self.proc.returncode} (log tail below)\n{tail}"
            raise RuntimeError(msg)

    # the run ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        args = self.args
        self.create_topics()
        ctx = mp.get_context("spawn")
        ready, stop, sent = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
        producer = ctx.Process(
            target=_producer_main,
            args=(self.settings.bootstrap_servers, self.trips, self.pings, args.rate, args.seed, args.pool,
                  ready, stop, sent),
            daemon=True,
        )  # fmt: skip
        producer.start()
        if not ready.wait(300):
            msg = "the producer process did not get ready within 300 s"
            raise RuntimeError(msg)
        time.sleep(1.0)  # some events in the topics before the first start
        self.wall_minus_mono = time.time() - time.monotonic()
        observer = Observer(self.settings, self.feature_topics, self.wall_minus_mono)
        observer.start()
        offsets = Offsets(self.settings)
        cycles: list[dict[str, Any]] = []
        errors: list[str] = []
        costs: dict[str, Any] | None = None
        produce_started = time.monotonic()
        sent0 = sent.value
        try:
            kinds = ["cold"] + ["plain"] * args.kills + ["probed"] * args.probe_restarts
            for i, kind in enumerate(kinds):
                try:  # a processor that fails to start or recover is reported, with its log
                    cycle = self.restart(kind, i, offsets, observer)
                    cycles.append(self.follow(cycle, observer))
                except RuntimeError as exc:
                    errors.append(f"{kind} restart {i}: {exc}")
                    break
                if observer.error:
                    errors.append(f"observer: {observer.error}")
                    break
            if self.proc is not None and self.proc.poll() is None:
                self.stop_processor()
        finally:
            produced_s = time.monotonic() - produce_started
            if args.keep:
                keep = Path(tempfile.mkdtemp(prefix="affresco-bench-recovery-kept-"))
                shutil.copytree(self.work, keep, dirs_exist_ok=True)
                self.kept = str(keep)
            stop.set()
            producer.join(60)
            if producer.is_alive():
                producer.kill()
            observer.stopping.set()
            observer.join(10)
            offsets.close()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            log_tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            try:  # everything stopped: nothing else of this run competes for the CPU
                costs = state_costs(self.recovery_dir())
            except (RuntimeError, sqlite3.Error) as exc:
                errors.append(f"state costs: {exc}")
            self.cleanup()
        achieved = (sent.value - sent0) / produced_s if produced_s > 0 else None
        result = self.summarize(cycles)
        result["achieved_rate_per_s"] = None if achieved is None else round(achieved)
        result["state_costs_after_stop"] = costs
        if self.kept is not None:
            result["work_directory_kept"] = self.kept
        result["errors"] = errors
        if errors:
            result["processor_log_tail"] = log_tail
        return result

    def restart(self, kind: str, index: int, offsets: Offsets, observer: Observer) -> Cycle:
        """Kill the running processor (unless this is the first start) and start it again at once."""
        kill_hwm: dict[tuple[str, int], int] = {}
        steady: dict[str, float] = {}
        if self.proc is not None:
            self.alive_or_fail()
            self.absorb(observer)  # everything read so far belongs to the old process
            lags = [u.lag_ms for u in self.steady]
            if lags:
                steady = {"p50": float(np.percentile(lags, 50)), "p99": float(np.percentile(lags, 99))}
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        marks = self.work / f"marks-{index}.jsonl" if kind == "probed" else None
        t0 = self.start(marks)
        # Right after the Popen (the new process needs > 1 s before it reads anything): what is in the
        # topics now is what it must catch up with; what the feature topics hold is the old output.
        targets = {tp: hw - 1 for tp, hw in offsets.high(self.sources).items() if hw > 0}
        if kind != "cold":
            kill_hwm = offsets.high(self.fparts)
        cycle = Cycle(kind, t0, targets, kill_hwm, marks=marks, steady_lag_ms=steady)
        cycle.cpu0 = _machine_cpu()
        if kind != "cold":
            cycle.resume = resume_offsets(self.recovery_dir())
        cycle.reads_done_s = time.monotonic() - t0
        return cycle

    def absorb(self, observer: Observer, cycle: Cycle | None = None) -> None:
        for u in observer.drain():
            if cycle is not None and cycle.is_new(u):
                cycle.feed(u)
            elif cycle is not None:
                # Old output read late: it still counts as processed before the kill.
                cycle.processed[u.source] = max(cycle.processed.get(u.source, -1), u.source_offset)
            prev = self.max_source_offset.get(u.source, -1)
            self.max_source_offset[u.source] = max(prev, u.source_offset)
            self.steady.append(u)
        horizon = time.monotonic() - STEADY_WINDOW_S
        while self.steady and self.steady[0].at < horizon:
            self.steady.popleft()

    def follow(self, cycle: Cycle, observer: Observer) -> dict[str, Any]:
        """Wait until the restarted processor has caught up, then let it run until the next kill."""
        # What the old process had processed: its output up to the feature topics' marks at the kill.
        cycle.processed = dict(self.max_source_offset)
        deadline = cycle.t0 + self.args.catchup_timeout_s
        while not cycle.caught_up:
            self.alive_or_fail()
            if time.monotonic() > deadline:
                msg = f"not caught up {self.args.catchup_timeout_s:.0f} s after the restart: {cycle.reached}"
                raise RuntimeError(msg)
            time.sleep(0.02)
            self.absorb(observer, cycle)
        assert self.proc is not None
        caught_mono = time.monotonic()
        proc_cpu = _proc_cpu_s(self.proc.pid)
        cpu1 = _machine_cpu()
        # Run on until the next kill: `--run-s` after the restart (plus the jitter), and at least
        # STEADY_WINDOW_S after catching up, so that the lag before the kill is a steady one.
        run_for = max(self.args.run_s + self.rnd.uniform(0, self.epoch), caught_mono - cycle.t0 + STEADY_WINDOW_S)
        while time.monotonic() < cycle.t0 + run_for:
            self.alive_or_fail()
            time.sleep(0.05)
            self.absorb(observer, cycle)
        self.absorb(observer, cycle)
        return self.measure(cycle, caught_mono, proc_cpu, cpu1, run_for)

    def measure(
        self, cycle: Cycle, caught_mono: float, proc_cpu: float, cpu1: tuple[float, float], run_for: float
    ) -> dict[str, Any]:
        t0 = cycle.t0
        new = sorted(cycle.new, key=lambda u: u.at)
        caught = max(cycle.reached.values()) - t0 if cycle.reached else 0.0  # no source record to reach
        first = new[0].at - t0 if new else None
        beyond: dict[tuple[str, int], float] = {}
        for u in new:
            done = cycle.processed.get(u.source, -1)
            if u.source_offset > done and u.source not in beyond:
                beyond[u.source] = u.at - t0
        replayed = to_read = None
        resume = cycle.resume
        if resume is not None:
            offsets = resume["offsets"]
            replayed = sum(max(0, cycle.processed.get(tp, -1) + 1 - offsets.get(tp, 0)) for tp in self.sources)
            to_read = sum(cycle.targets.get(tp, -1) + 1 - offsets.get(tp, 0) for tp in self.sources)
        elif cycle.kind == "cold":
            to_read = sum(v + 1 for v in cycle.targets.values())
        at_catch = [u for u in new if u.at - t0 <= caught + 0.25 and u.at - t0 >= caught - 0.25]
        steady_p99 = cycle.steady_lag_ms.get("p99")
        back = next((u.at - t0 for u in new if steady_p99 is not None and u.lag_ms <= steady_p99), None)
        busy = (cpu1[0] - cycle.cpu0[0]) / max(cpu1[1] - cycle.cpu0[1], 1) * (os.cpu_count() or 1)
        out: dict[str, Any] = {
            "kind": cycle.kind,
            "first_output_s": _r(first),
            "first_new_output_s": _r(min(beyond.values())) if beyond else None,
            "replay_done_s": _r(max(beyond.values())) if len(beyond) == len(cycle.targets) else None,
            "caught_up_s": round(caught, 3),
            "caught_up_seen_by_bench_s": round(caught_mono - t0, 3),
            "events_replayed": replayed,
            "events_to_read": to_read,
            "catchup_events_per_s": None
            if to_read is None or first is None or caught <= first
            else round(to_read / (caught - first)),
            "lag_at_caught_up_ms": _r(float(np.median([u.lag_ms for u in at_catch]))) if at_catch else None,
            "steady_lag_before_kill_ms": {k: round(v, 1) for k, v in cycle.steady_lag_ms.items()},
            # Secondary: the first output whose lag is back within the p99 lag of the 5 s before the kill.
            "lag_back_to_steady_p99_s": _r(back),
            "processor_cpu_s_to_caught_up": _r(proc_cpu),
            # CPU seconds per wall second the restarted processor got until caught up (1 = a whole core).
            "processor_cores_used_to_caught_up": _r(proc_cpu / caught) if caught > 0 else None,
            "machine_busy_cores_to_caught_up": round(busy, 2),
            "bench_reads_after_popen_s": round(cycle.reads_done_s, 3),
            "ran_s_before_next_kill": round(run_for, 2),
        }
        if resume is not None:
            out["recovery_store"] = {k: v for k, v in resume.items() if k != "offsets"}
        if cycle.marks is not None:
            marks = read_marks(cycle.marks)
            b = breakdown(marks, t0, out, proc_cpu)
            handed = b.pop("resume_offsets_handed")
            if resume is not None:
                expected = {f"{p}-{t}": o for (t, p), o in resume["offsets"].items()}
                b["resume_offsets_match_store"] = handed == expected
            out["breakdown"] = b
        return out

    def stop_processor(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self) -> None:
        admin = TopicAdmin(self.settings)
        try:
            owned = [t for t in admin.names() if t.startswith((f"bench.recovery.{self.tag}.", self.prefix + "."))]
            if owned:
                admin.delete(owned)
        except KafkaException:
            pass
        shutil.rmtree(self.work, ignore_errors=True)

    def summarize(self, cycles: list[dict[str, Any]]) -> dict[str, Any]:
        plain = [c for c in cycles if c["kind"] == "plain"]
        probed = [c for c in cycles if c["kind"] == "probed"]
        cold = [c for c in cycles if c["kind"] == "cold"]
        stats = {}
        for key in ("first_output_s", "first_new_output_s", "replay_done_s", "caught_up_s", "events_replayed",
                    "events_to_read", "processor_cpu_s_to_caught_up"):  # fmt: skip
            values = [c[key] for c in plain if c[key] is not None]
            stats[key] = (
                {"median": _r(statistics.median(values)), "max": _r(max(values)), "n": len(values)} if values else None
            )
        caught = [c["caught_up_s"] for c in plain]
        return {
            "epoch_s": self.epoch,
            "restarts": stats,
            "target_met": bool(caught) and max(caught) < TARGET_S,
            "cold_start": cold[0] if cold else None,
            "kills": plain,
            "probed": probed,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=5000, help="events per second, steady")
    parser.add_argument("--run-s", type=float, default=20.0, help="seconds from a (re)start to the next kill")
    parser.add_argument("--kills", type=int, default=3, help="measured kill -9 + restart per epoch value")
    parser.add_argument("--epochs", default="5,1", help="comma-separated `process run --epoch` values")
    parser.add_argument("--probe-restarts", type=int, default=1, help="extra probed restarts per epoch value")
    parser.add_argument("--catchup-timeout-s", type=float, default=120.0)
    parser.add_argument("--pool", type=int, default=100_000, help="simulated events cycled by the producer")
    parser.add_argument("--no-mirror", dest="mirror", action="store_false", help="run with --no-mirror")
    parser.add_argument("--no-imports", action="store_true", help="skip the import-time figures")
    parser.add_argument("--keep", action="store_true", help="keep a copy of each work directory (logs, marks, stores)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    epochs = [float(e) for e in args.epochs.split(",") if e.strip()]
    load = os.getloadavg()[0]
    settings = KafkaSettings()
    TopicAdmin(settings).ping()
    rnd = random.Random(args.seed)
    imports = None if args.no_imports else import_times(sys.executable, {**os.environ})
    series = [Series(settings, args, epoch, rnd).run() for epoch in epochs]
    result = {
        "bench": "recovery",
        "groups": sorted(d["group"] + ":v" + str(d["version"]) for d in demo_docs("t", "p")),
        "rate_per_s": args.rate,
        "run_s": args.run_s,
        "kills_per_epoch": args.kills,
        "mirror": args.mirror,
        "imports": imports,
        "series": series,
        "targets": {"restart_to_caught_up_s": TARGET_S},
        "target_met": {str(s["epoch_s"]): s["target_met"] for s in series},
        "load_avg_1m_at_start": round(load, 2),
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
