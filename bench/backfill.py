"""Benchmark: backfill throughput, a Kafka replay of every demo group through `GroupEngine`.

Prints one JSON line. Target (issue 4): ≥ 500k events/s per core, one process. Needs a running
broker. The point-in-time join has its own benchmark: `python -m bench.pit_join`.

    python -m bench.backfill [--events 300000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from backfill import BackfillJob, run_backfill
from backfill.resources import peak_rss_mb
from bench._machine import machine
from processors.definitions import FeatureGroup, compile_spec
from state.online import open_store
from streams.admin import TopicAdmin, TopicSpec
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.sim import DRIVER_PINGS_TOPIC, TRIPS_TOPIC, simulate, topic_for

T0 = 1_767_225_600_000
FEATURES = Path(__file__).resolve().parents[1] / "processors" / "features" / "rides"


def _groups(trips: str, pings: str) -> list[FeatureGroup]:
    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    out = []
    for path in sorted(FEATURES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["source"]["topic"] = rename[doc["source"]["topic"]]
        doc["ttl"] = "3650d"
        group, problems = compile_spec(doc, str(path))
        if group is None:
            raise RuntimeError(problems)
        out.append(group)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    settings = KafkaSettings()
    suffix = uuid.uuid4().hex[:8]
    trips, pings = f"bench.trips.{suffix}", f"bench.pings.{suffix}"
    TopicAdmin(settings).ensure([TopicSpec(t, partitions=4, retention_ms=-1) for t in (trips, pings)])
    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    events = list(simulate(args.events, seed=3, start_ms=T0))
    with EventProducer(settings) as producer:
        for e in events:
            producer.send(rename[topic_for(e)], e)
    groups = _groups(trips, pings)
    end = events[-1].event_time + 1
    result: dict[str, object] = {"bench": "backfill", "events": args.events}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started, cpu0 = time.perf_counter(), time.process_time()
        read, per_group = 0, {}
        for g in groups:
            job = BackfillJob(g, "kafka", T0, end, root / "offline", root / "cp", load_online=True)
            group_started = time.process_time()
            report = run_backfill(job, settings, lambda: open_store("rocksdb", path=root / "db"))
            per_group[g.name] = {
                "records_read": report.read,
                "accepted": report.accepted,
                "records_per_cpu_s": round(report.read / (time.process_time() - group_started)),
            }
            read += report.read
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
        result["backfill"] = {
            "groups": len(groups), "records_read": read, "wall_s": round(wall, 2),
            "records_per_s": round(read / wall), "records_per_cpu_s": round(read / cpu), "per_group": per_group,
        }  # fmt: skip
    TopicAdmin(settings).delete([trips, pings])
    result["peak_rss_mb"] = peak_rss_mb()
    result["target_records_per_s_per_core"] = 500_000
    result["machine"] = machine()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
