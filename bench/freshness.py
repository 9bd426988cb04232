"""Benchmark: freshness, a source event produced → its effect readable in the online store.

Runs `affresco process run zone_demand` (following a fresh topic, `AFFRESCO_DATA_DIR` in a
temporary directory, RocksDB store) in a background process, produces `trip_requested` events at a
steady rate with strictly increasing event times (= the wall clock), spread over `--zones` pickup
zones, and polls the store from here, opened `access="secondary"` (it catches up with the processor
on every read). An event is visible once its zone's record has `event_time ≥` the event's. One run
per `--epochs` value, to show what the snapshot interval costs. Target (issue): p99 < 1 s.

Latencies are measured to the poll that first sees the event, so they include up to one poll
interval (`--poll-ms` plus a poll's own duration, both reported).

Prints one JSON line. Needs a running broker (`affresco infra up`).

    python -m bench.freshness [--rate 500] [--seconds 20] [--epochs 1,0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench._machine import machine
from state.online import OnlineStore, open_store
from streams.admin import TopicAdmin, TopicSpec
from streams.events.domain import TripRequested
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.sim import TRIPS_TOPIC

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "processors" / "features" / "rides" / "zone_demand.yaml"
REF = "zone_demand:v1"
WARMUP_ZONE = "warmup"


def _event(i: int, zone: str, event_time: int) -> TripRequested:
    return TripRequested(
        event_time=event_time,
        trip_id=f"ft-{i:09d}",
        rider_id=f"r-{i % 1000:04d}",  # the Kafka key: spreads the events over the partitions
        country="US",
        city="nyc",
        pickup_zone=zone,
        dropoff_zone="nyc-00",
        distance_km=1.0 + (i % 50) / 10,
        surge=1.0,
    )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _start_processor(work: Path, topic: str, prefix: str, epoch: float, mirror: bool) -> subprocess.Popen[bytes]:
    definitions = work / "definitions"
    definitions.mkdir()
    doc = yaml.safe_load(DEMO.read_text())
    if doc["source"]["topic"] != TRIPS_TOPIC:
        msg = f"{DEMO}: expected the demo group to read {TRIPS_TOPIC}, got {doc['source']['topic']!r}"
        raise RuntimeError(msg)
    doc["source"]["topic"] = topic
    (definitions / "zone_demand.yaml").write_text(yaml.safe_dump(doc))
    env = {
        **os.environ,
        "AFFRESCO_DATA_DIR": str(work / "data"),
        "AFFRESCO_KAFKA_TOPIC_PREFIX": prefix,  # FeatureUpdates and dead letters go to fresh topics
        "AFFRESCO_ONLINE_STORE": "rocksdb",
    }
    cmd = [
        str(Path(sys.executable).parent / "affresco"),
        "process", "run", "zone_demand", "-d", str(definitions), "--epoch", str(epoch),
    ]  # fmt: skip
    if not mirror:
        cmd.append("--no-mirror")
    log = (work / "processor.log").open("wb")
    # Its own session: stopping it can never reach this process, and its process group is only its own.
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGTERM, then SIGKILL after 10 s; returns how it ended."""
    if proc.poll() is not None:
        return {"exit_code": proc.returncode, "how": "exited by itself"}
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
        how = "SIGTERM"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        how = "SIGKILL"
    return {"exit_code": proc.returncode, "how": how, "stop_s": round(time.perf_counter() - started, 2)}


def _open_secondary(work: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> OnlineStore:
    path = work / "data" / "online" / "rocksdb"
    deadline = time.monotonic() + timeout_s
    while not (path / "CURRENT").exists():
        if proc.poll() is not None:
            msg = f"the processor exited ({proc.returncode}) before creating {path}: see {work / 'processor.log'}"
            raise RuntimeError(msg)
        if time.monotonic() > deadline:
            msg = f"no RocksDB store at {path} after {timeout_s:.0f} s"
            raise RuntimeError(msg)
        time.sleep(0.05)
    return open_store("rocksdb", path=path, access="secondary", secondary_path=work / "secondary")


def one_run(settings: KafkaSettings, args: argparse.Namespace, epoch: float) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topic, prefix = f"bench.fresh.{tag}", f"benchfresh{tag}"
    work = Path(tempfile.mkdtemp(prefix="affresco-bench-freshness-"))
    admin = TopicAdmin(settings)
    admin.ensure([TopicSpec(topic, partitions=4, retention_ms=-1)])
    proc = _start_processor(work, topic, prefix, epoch, args.mirror)
    store: OnlineStore | None = None
    stopped: dict[str, Any] = {}
    try:
        producer = EventProducer(settings, linger_ms=args.linger_ms)
        # Warm-up: start-up (imports, partition assignment, store creation) is not freshness.
        started = time.perf_counter()
        warm_time = _now_ms()
        producer.send(topic, _event(0, WARMUP_ZONE, warm_time))
        producer.flush(30)
        store = _open_secondary(work, proc, 120)
        while True:
            record = store.get(REF, WARMUP_ZONE)
            if record is not None and record.event_time >= warm_time:
                break
            if proc.poll() is not None:
                msg = f"the processor exited ({proc.returncode}): see {work / 'processor.log'}"
                raise RuntimeError(msg)
            if time.perf_counter() - started > 120:
                msg = f"the warm-up event never became visible: see {work / 'processor.log'}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        startup_s = time.perf_counter() - started

        zones = [f"fz-{z:03d}" for z in range(args.zones)]
        keys = [(REF, z) for z in zones]
        pending: dict[str, deque[tuple[int, int]]] = {z: deque() for z in zones}  # zone -> (event_time, sent_ns)
        latencies: list[float] = []
        n = int(args.rate * args.seconds)
        poll_every = args.poll_ms / 1000
        polls, poll_s = 0, 0.0
        last_time = warm_time
        begin = time.perf_counter()
        next_poll = begin
        sent = 0
        deadline = None
        while True:
            now = time.perf_counter()
            # Send what is due (a late loop catches up: the rate holds on average).
            while sent < n and begin + sent / args.rate <= now:
                event_time = max(_now_ms(), last_time + 1)  # strictly increasing: each event is detectable
                last_time = event_time
                zone = zones[sent % len(zones)]
                producer.send(topic, _event(sent + 1, zone, event_time))
                pending[zone].append((event_time, time.time_ns()))
                sent += 1
            producer.poll(0)
            if now >= next_poll:
                t = time.perf_counter()
                found = store.get_many(keys)
                seen_ns = time.time_ns()
                poll_s += time.perf_counter() - t
                polls += 1
                for (_, zone), record in found.items():
                    queue = pending[zone]
                    if record is None:
                        continue
                    while queue and queue[0][0] <= record.event_time:
                        latencies.append((seen_ns - queue.popleft()[1]) / 1e6)
                next_poll = now + poll_every
            if sent == n:
                if deadline is None:
                    producer.flush(30)
                    deadline = time.perf_counter() + args.drain_s
                if len(latencies) == n or time.perf_counter() > deadline:
                    break
            time.sleep(max(0.0, min(begin + sent / args.rate, next_poll) - time.perf_counter()))
        produce_s = time.perf_counter() - begin
    finally:
        if store is not None:
            store.close()
        stopped = _stop(proc)
        alive = proc.poll() is None
        owned = [t for t in admin.names() if t == topic or t.startswith(prefix + ".")]
        if owned:
            admin.delete(owned)
        log_tail = (work / "processor.log").read_text(errors="replace")[-2000:]
        shutil.rmtree(work, ignore_errors=True)
    if alive:
        msg = f"the processor (pid {proc.pid}) is still running after SIGKILL"
        raise RuntimeError(msg)
    if not latencies:
        msg = f"no produced event became visible; processor log tail:\n{log_tail}"
        raise RuntimeError(msg)
    lat = np.array(latencies)
    return {
        "epoch_s": epoch,
        "startup_s": round(startup_s, 2),
        "produced": n,
        "visible": int(lat.size),
        "not_visible_after_drain": n - int(lat.size),
        "achieved_rate_per_s": round(n / produce_s),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p90_ms": round(float(np.percentile(lat, 90)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "min_ms": round(float(lat.min()), 1),
        "polls": polls,
        "poll_ms_mean": round(poll_s / max(polls, 1) * 1000, 2),
        "processor_stop": stopped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--epochs", default="1,0.2", help="comma-separated `process run --epoch` values, one run each")
    parser.add_argument("--zones", type=int, default=50, help="distinct pickup zones (entities)")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="pause between two reads of the store")
    parser.add_argument("--linger-ms", type=int, default=0, help="producer linger.ms")
    parser.add_argument("--drain-s", type=float, default=10.0, help="wait this long for the last events")
    parser.add_argument("--no-mirror", dest="mirror", action="store_false", help="run the processor with --no-mirror")
    args = parser.parse_args()
    epochs = [float(e) for e in args.epochs.split(",") if e.strip()]
    load = os.getloadavg()[0]
    settings = KafkaSettings()
    runs = [one_run(settings, args, epoch) for epoch in epochs]
    result = {
        "bench": "freshness",
        "group": REF,
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "zones": args.zones,
        "mirror": args.mirror,
        "producer_linger_ms": args.linger_ms,
        "runs": runs,
        "targets": {"p99_ms": 1000},
        "target_met": {str(r["epoch_s"]): r["p99_ms"] < 1000 and r["not_visible_after_drain"] == 0 for r in runs},
        "load_avg_1m_at_start": round(load, 2),
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
