"""Benchmark: stream processor throughput on the four demo feature groups, and where the time goes.

Produces `--events` simulated events to fresh topics (4 partitions, kept forever) first, then times
`run_processor` until idle on the demo groups (`processors/features/rides/*.yaml`, rewritten to read
the fresh topics) with RocksDB in a temporary directory, one configuration per child process (so
each has its own peak RSS and CPU time):

- `full`: Parquet mirror + raw archive, FeatureUpdate events, crash recovery (what `process run` does);
- `no_mirror`: the same without the mirror and archive (`mirror_root=None`, `archive=False`);
- `no_recovery` (opt-in): `no_mirror` without the recovery store (no per-epoch state snapshots).

Start-up is measured twice: the time to the first online-store write of the big run, and the wall
time of the `full` configuration on a tiny topic pair (start + shutdown of an almost empty run).
A kernel-only figure runs decode, `GroupEngine.apply` and `finalize` (5,000-event batches, not split
into shards), the RocksDB upsert and the FeatureUpdate JSON on the same events without Kafka or bytewax.
Target (issue): ≥ 50,000 events/s per core; per core = events/s ÷ min(cores, CPU s / wall s) of the
processor process (Kafka runs on the same cores).

TTLs are raised to 3650d by default: the simulation spans days of event time, and with the demo
TTLs (1d) most updates would count as already expired and skip the store write.

Prints one JSON line. Needs a running broker (`affresco infra up`).

    python -m bench.processor [--events 1000000] [--configs full,no_mirror]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import queue
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench._machine import machine
from processors.definitions import FeatureGroup, compile_spec
from processors.engine import GroupEngine, GroupState, SourceRow
from processors.progress import PriorMax
from processors.records import feature_update_event, online_record
from state.online import open_store
from streams.admin import TopicAdmin, TopicSpec
from streams.codec import EventDecoder, Rejection
from streams.events.base import Event
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.sim import DRIVER_PINGS_TOPIC, TRIPS_TOPIC, simulate, topic_for

DEMO_DIR = Path(__file__).resolve().parent.parent / "processors" / "features" / "rides"
BATCH = 5000
CONFIGS: dict[str, dict[str, bool]] = {
    "full": {"mirror": True, "emit": True, "recovery": True},
    "no_mirror": {"mirror": False, "emit": True, "recovery": True},
    "no_recovery": {"mirror": False, "emit": True, "recovery": False},
}


def demo_docs(trips: str, pings: str, ttl: str | None) -> list[dict[str, Any]]:
    """The demo groups' YAML documents, reading `trips` and `pings` instead of the rides topics."""
    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    docs = []
    for path in sorted(DEMO_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["source"]["topic"] = rename[doc["source"]["topic"]]
        if ttl is not None:
            doc["ttl"] = ttl
        docs.append(doc)
    return docs


def compile_docs(docs: list[dict[str, Any]]) -> list[FeatureGroup]:
    groups = []
    for doc in docs:
        group, problems = compile_spec(doc, f"bench:{doc['group']}")
        if group is None:
            raise RuntimeError(problems)
        groups.append(group)
    return groups


def produce(settings: KafkaSettings, events: list[Event], trips: str, pings: str) -> float:
    """Send `events` to the fresh topics; returns seconds (not part of any processor figure)."""
    TopicAdmin(settings).ensure([TopicSpec(t, partitions=4, retention_ms=-1) for t in (trips, pings)])
    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    started = time.perf_counter()
    with EventProducer(settings) as producer:
        for i, e in enumerate(events):
            producer.send(rename[topic_for(e)], e)
            if i % 10_000 == 0:
                producer.poll(0)
    return time.perf_counter() - started


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return float(sum(parts) - idle), float(sum(parts))


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not `ru_maxrss`: Linux carries that across exec, so a spawned
    child would report its parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(job: dict[str, Any], out: Any) -> None:
    """One processor run in a fresh process: wall, CPU, peak RSS, counters, first-write time."""
    from processors.runtime.flow import ProcessorOptions, run_processor
    from processors.runtime.sink import OutputConfig

    groups = compile_docs(job["docs"])
    root = Path(job["root"])
    settings = KafkaSettings(topic_prefix=job["prefix"])
    writes: list[float] = []

    def open_db() -> Any:
        store = open_store("rocksdb", path=root / "db")
        upsert = store.upsert

        def timed_upsert(records: Any, **kwargs: Any) -> None:
            writes.append(time.perf_counter())
            upsert(records, **kwargs)

        store.upsert = timed_upsert  # type: ignore[method-assign]
        return store

    output = OutputConfig(
        kafka=settings,
        open_store=open_db,
        mirror_root=root / "offline" if job["mirror"] else None,
        emit_feature_updates=job["emit"],
    )
    options = ProcessorOptions(
        until_idle=True,
        batch_size=job["batch_size"],
        shards=job["shards"],
        epoch_s=job["epoch_s"],
        recovery_dir=root / "recovery" if job["recovery"] else None,
        archive=job["mirror"],
    )
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    machine0 = _cpu_times()
    started = time.perf_counter()
    counters = run_processor(groups, output, options)
    wall = time.perf_counter() - started
    machine1 = _cpu_times()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    out.put(
        {
            "wall_s": wall,
            "cpu_s": cpu,
            "peak_rss_mb": _peak_rss_mb(),
            "offline_files": sum(1 for p in (root / "offline").rglob("*.parquet")) if job["mirror"] else 0,
            "first_write_s": (writes[0] - started) if writes else None,
            "last_write_s": (writes[-1] - started) if writes else None,
            "store_writes": len(writes),
            "updates": counters.updates,
            "dead_letters": dict(counters.dead_letters),
            "archived": counters.archived,
            "machine_busy_cores": (machine1[0] - machine0[0]) / (machine1[1] - machine0[1]) * (os.cpu_count() or 1),
        }
    )


def run_config(job: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")  # a clean process: no inherited memory, librdkafka threads or locks
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(job, out))
    proc.start()
    deadline = time.monotonic() + job["timeout_s"]
    try:
        while True:
            try:
                result: dict[str, Any] = out.get(timeout=1)
                break
            except queue.Empty:
                if not proc.is_alive() or time.monotonic() > deadline:
                    msg = f"processor run {job['root']} failed (exit code {proc.exitcode}): no result"
                    raise RuntimeError(msg) from None
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return result


def summarize(raw: dict[str, Any], events: int, cores: int) -> dict[str, Any]:
    wall, cpu = raw["wall_s"], raw["cpu_s"]
    eps = events / wall
    cores_used = min(cores, cpu / wall)
    first = raw["first_write_s"]
    summary: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "events_per_s": round(eps),
        "cpu_s": round(cpu, 2),
        "cores_used": round(cores_used, 2),
        "events_per_s_per_core": round(eps / max(cores_used, 1e-9)),
        "first_write_s": None if first is None else round(first, 2),
        # From the first store write to the end: start-up (connect, assign, first fetch) excluded.
        "events_per_s_after_first_write": None if first is None else round(events / (wall - first)),
        "updates": raw["updates"],
        "store_writes": raw["store_writes"],
        "dead_letters": raw["dead_letters"],
        "archived": raw["archived"],
        "offline_files": raw["offline_files"],
        "peak_rss_mb": round(raw["peak_rss_mb"]),
        "machine_busy_cores": round(raw["machine_busy_cores"], 2),
    }
    return summary


def kernel_only(groups: list[FeatureGroup], events: list[Event], lines: list[bytes], root: Path) -> dict[str, Any]:
    """Decode, apply and store-write costs on the same events, without Kafka or bytewax."""
    engines = [GroupEngine(g) for g in groups]
    decoders = {g.event_type: EventDecoder(g.event_class) for g in groups}
    by_type: dict[str, list[GroupEngine]] = {}
    for engine in engines:
        by_type.setdefault(engine.group.event_type, []).append(engine)
    states = {e.group.ref: GroupState(partitions=1) for e in engines}
    prior = PriorMax()
    apply_s = {e.group.ref: 0.0 for e in engines}
    decode_s = upsert_s = feature_update_s = 0.0
    decoded = updates = 0
    n = len(events)
    with open_store("rocksdb", path=root / "kernel-db") as store:
        for start in range(0, n, BATCH):
            chunk = events[start : start + BATCH]
            raw = lines[start : start + BATCH]
            # Decode what some group reads (the processor skips other event types by header).
            t = time.perf_counter()
            for e, line in zip(chunk, raw, strict=True):
                etype = e.type_name()
                if etype in decoders and isinstance(decoders[etype].decode_one(line), Rejection):
                    raise RuntimeError(line)
            decode_s += time.perf_counter() - t
            rows: dict[str, list[SourceRow]] = {}
            for i, e in enumerate(chunk):
                kind = e.type_name()
                if kind in by_type:
                    row = SourceRow(e.__dict__, 0, start + i, prior_max=prior.stamp(0, kind, e.event_time))
                    rows.setdefault(kind, []).append(row)
            for etype, type_rows in rows.items():
                decoded += len(type_rows)
                for engine in by_type[etype]:
                    ref = engine.group.ref
                    t = time.perf_counter()
                    state = states[ref]
                    result = engine.apply(state, type_rows)
                    state.advance(prior.of(etype))  # and the offline history, as the watermark moves
                    engine.finalize(state, state.horizon(engine.group.lateness_ms))
                    apply_s[ref] += time.perf_counter() - t
                    updates += len(result.updates)
                    group = engine.group
                    t = time.perf_counter()
                    records = [online_record(group, u) for u in result.updates]
                    store.upsert(records, ttl_ms=group.ttl_ms)
                    upsert_s += time.perf_counter() - t
                    t = time.perf_counter()
                    for u in result.updates:
                        feature_update_event(group, u).model_dump_json().encode()
                    feature_update_s += time.perf_counter() - t
    total_apply = sum(apply_s.values())
    # What the processor's per-epoch recovery snapshot costs once this much state exists (ShardLogic
    # pickles every entity of its shard at every epoch, so the cost grows with the state, not the rate).
    t = time.perf_counter()
    blob = pickle.dumps(states, protocol=pickle.HIGHEST_PROTOCOL)
    pickle_s = time.perf_counter() - t
    return {
        "batch_events": BATCH,
        "decoded_events": decoded,
        "updates": updates,
        "decode_s": round(decode_s, 2),
        "apply_s": round(total_apply, 2),
        "apply_s_by_group": {k: round(v, 2) for k, v in apply_s.items()},
        "store_upsert_s": round(upsert_s, 2),
        "feature_update_json_s": round(feature_update_s, 2),
        "apply_events_per_s": round(n / total_apply),
        "decode_apply_upsert_events_per_s": round(n / (decode_s + total_apply + upsert_s)),
        "decode_us_per_decoded_event": round(decode_s / max(decoded, 1) * 1e6, 2),
        "upsert_us_per_update": round(upsert_s / max(updates, 1) * 1e6, 2),
        "feature_update_us_per_update": round(feature_update_s / max(updates, 1) * 1e6, 2),
        "entities_at_end": {ref: len(s.entities) for ref, s in states.items()},
        "state_pickle_s_at_end": round(pickle_s, 3),
        "state_pickle_mb_at_end": round(len(blob) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--configs", default="full,no_mirror", help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--epoch", type=float, default=5.0)
    parser.add_argument("--ttl", default="3650d", help="TTL of every group ('demo' keeps the YAML's)")
    parser.add_argument("--tiny-events", type=int, default=1000, help="events of the start-up run")
    parser.add_argument("--no-kernel", action="store_true", help="skip the kernel-only figure")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown {unknown}, expected some of {list(CONFIGS)}")

    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    tag = uuid.uuid4().hex[:8]
    settings = KafkaSettings()
    prefix = f"bench{tag}"  # the processor's own topics (features, DLQ) under a fresh prefix
    trips, pings = f"bench.proc.{tag}.trips", f"bench.proc.{tag}.pings"
    tiny_trips, tiny_pings = f"{trips}.tiny", f"{pings}.tiny"
    ttl = None if args.ttl == "demo" else args.ttl
    root = Path(tempfile.mkdtemp(prefix="affresco-bench-processor-"))
    admin = TopicAdmin(settings)
    try:
        hour = 3_600_000
        start_ms = (time.time_ns() // 1_000_000 - 7 * 24 * hour) // hour * hour
        started = time.perf_counter()
        events = list(simulate(args.events, seed=args.seed, start_ms=start_ms))
        simulate_s = time.perf_counter() - started
        produce_s = produce(settings, events, trips, pings)
        tiny = list(simulate(args.tiny_events, seed=args.seed + 1, start_ms=start_ms))
        produce(settings, tiny, tiny_trips, tiny_pings)

        def job(name: str, docs: list[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
            directory = root / name
            directory.mkdir()
            return {
                "docs": docs, "root": str(directory), "prefix": prefix, "batch_size": args.batch_size,
                "shards": args.shards, "epoch_s": args.epoch, "timeout_s": timeout_s, **CONFIGS[name.split("-")[0]],
            }  # fmt: skip

        startup = run_config(job("full-tiny", demo_docs(tiny_trips, tiny_pings, ttl), 300))
        runs = {}
        for name in configs:
            raw = run_config(job(name, demo_docs(trips, pings, ttl), max(600, args.events / 1000)))
            runs[name] = summarize(raw, args.events, cores)
        kernel = None
        if not args.no_kernel:
            groups = compile_docs(demo_docs(trips, pings, ttl))
            lines = [e.model_dump_json().encode() for e in events]
            kernel = kernel_only(groups, events, lines, root)
        best = max(r["events_per_s_per_core"] for r in runs.values()) if runs else None
        result = {
            "bench": "processor",
            "events": args.events,
            "groups": ["city_eta:v1", "rider_history:v1", "zone_demand:v1", "zone_supply:v1"],
            "options": {"batch_size": args.batch_size, "shards": args.shards, "epoch_s": args.epoch, "ttl": args.ttl},
            "simulate_s": round(simulate_s, 2),
            "produce_s": round(produce_s, 2),
            "startup": {
                "tiny_events": args.tiny_events,
                "tiny_run_wall_s": round(startup["wall_s"], 2),
                "tiny_run_first_write_s": None
                if startup["first_write_s"] is None
                else round(startup["first_write_s"], 2),
                "tiny_run_peak_rss_mb": round(startup["peak_rss_mb"]),
            },
            "runs": runs,
            "kernel_only": kernel,
            "targets": {"events_per_s_per_core": 50_000},
            "target_met": None if best is None else best >= 50_000,
            "load_avg_1m_at_start": round(load, 2),
            "machine": machine(),
        }
        print(json.dumps(result))
    finally:
        owned = [t for t in admin.names() if t.startswith((prefix + ".", f"bench.proc.{tag}."))]
        if owned:
            admin.delete(owned)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
