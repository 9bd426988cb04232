"""Benchmark: backfill throughput (Kafka replay through GroupEngine) and point-in-time join speed.

Prints one JSON line. Targets (issue 4): backfill ≥ 500k events/s per core; a point-in-time join of
1M label rows against 3 groups in < 10 s on 2 cores. Needs a running broker.

    python -m bench.backfill [--events 300000] [--labels 50000]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import yaml

from backfill import BackfillJob, run_backfill
from backfill.source import read_chunks
from backfill.training import FeatureRequest, point_in_time_join
from bench._machine import machine
from processors.definitions import FeatureGroup, compile_spec
from processors.engine import SourceRow
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
    parser.add_argument("--labels", type=int, default=50_000)
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
        read = 0
        for g in groups:
            job = BackfillJob(g, "kafka", T0, end, root / "offline", root / "cp", load_online=True)
            report = run_backfill(job, settings, lambda: open_store("rocksdb", path=root / "db"))
            read += report.read
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
        result["backfill"] = {
            "groups": len(groups), "records_read": read, "wall_s": round(wall, 2),
            "records_per_s": round(read / wall), "records_per_cpu_s": round(read / cpu),
        }  # fmt: skip
        # Point-in-time join: completed trips as labels, features of 3 groups as of the request time.
        labels = [dict(e.__dict__) for e in events if e.type_name() == "trip_completed"][: args.labels]
        chosen = [g for g in groups if g.name in ("zone_demand", "city_eta", "rider_history")]
        rows: dict[str, Sequence[SourceRow]] = {}
        for g in chosen:
            rows[g.ref] = [r for c in read_chunks(g, "kafka", T0, end, settings=settings, offline_root=root,
                                                   chunk_size=200_000) for r in c.rows]  # fmt: skip
        requests = [FeatureRequest(g, tuple(g.feature_names), next(iter(g.key.fields))) for g in chosen]
        started = time.perf_counter()
        joined = point_in_time_join(labels, "requested_at", requests, rows)
        join_s = time.perf_counter() - started
        result["pit_join"] = {
            "labels": len(joined),
            "groups": len(chosen),
            "seconds": round(join_s, 2),
            "labels_per_s": round(len(joined) / join_s),
            "projected_1m_labels_s": round(join_s * 1_000_000 / len(joined), 1),
        }
    TopicAdmin(settings).delete([trips, pings])
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["targets"] = {"backfill_records_per_s_per_core": 500_000, "pit_join_1m_labels_s": 10}
    result["machine"] = machine()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
