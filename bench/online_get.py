"""Benchmark: one online request's multi-get of three groups, on RocksDB and on Cassandra.

A request reads `[("zone_demand:v1", z), ("zone_supply:v1", z), ("city_eta:v1", c)]` with one
`OnlineStore.get_many` call, for random `z` and `c` among `--records` entities per group (values
shaped like the demo groups', plus a ~1 KB state blob of JSON tiles). Latency per request after
`--warmup` requests, single process, one request at a time:

- `rocksdb`: the owning (read_write) store in a temporary directory;
- `rocksdb_secondary`: the same database read through a secondary instance (how a process beside a
  running processor reads; here the owner is idle, so each read's catch-up finds nothing new), with
  the default `catch_up_interval_ms=0` (catch up before every read), and
  `rocksdb_secondary_catch_up_100ms` with `catch_up_interval_ms=100`;
- `cassandra`: a fresh keyspace (dropped at the end), default `read_mode="per_key"`;
- `cassandra_in_per_group`: the same keyspace with `read_mode="in_per_group"`.

Targets (issue): p99 < 0.2 ms on RocksDB, < 2 ms on Cassandra.

Prints one JSON line. Needs Cassandra for the Cassandra figures (`affresco infra up --with cassandra`);
`--skip-cassandra` measures RocksDB only.

    python -m bench.online_get [--records 50000] [--requests 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench._machine import machine
from state.online import OnlineRecord, OnlineStore, RecordKey, open_store

DAY_MS = 86_400_000
GROUPS = ("zone_demand:v1", "zone_supply:v1", "city_eta:v1")
WRITE_BATCH = 5000


def _values(group: str, rng: random.Random) -> dict[str, Any]:
    if group == "zone_demand:v1":
        return {
            "requests_10m": rng.randint(0, 50),
            "requests_1h": rng.randint(0, 300),
            "mean_distance_km_1h": round(rng.uniform(1, 15), 3),
            "max_surge_1h": round(rng.uniform(1, 3), 2),
            "distinct_riders_1h": rng.randint(0, 250),
        }
    if group == "zone_supply:v1":
        return {
            "available_pings_10m": rng.randint(0, 100),
            "available_drivers_10m": rng.randint(0, 60),
            "available_drivers_1h": rng.randint(0, 120),
        }
    return {
        "trips_1h": rng.randint(0, 2000),
        "mean_eta_s_1h": round(rng.uniform(300, 1500), 3),
        "mean_s_per_km_1h": round(rng.uniform(60, 300), 3),
        "max_eta_s_1h": round(rng.uniform(1500, 4000), 3),
    }


def _state(rng: random.Random, now: int) -> bytes:
    """~1 KB of tile state, shaped like `EntityState.to_bytes()` (JSON tiles per feature)."""
    hop = 300_000
    first = now // hop - 11
    tiles = {
        f"f{f}": {str(first + k): [rng.randint(0, 99), round(rng.uniform(0, 1000), 3)] for k in range(12)}
        for f in range(4)
    }
    blob = orjson.dumps({"u": now, "rev": rng.randint(1, 999), "tiles": tiles, "rows": {}})
    return blob


def make_records(n: int, seed: int) -> list[OnlineRecord]:
    rng = random.Random(seed)
    now = time.time_ns() // 1_000_000
    out = []
    for group in GROUPS:
        for i in range(n):
            entity = f"city-{i:06d}" if group == "city_eta:v1" else f"zone-{i:06d}"
            t = now - rng.randint(0, 3_600_000)
            out.append(OnlineRecord(group, entity, t, _values(group, rng), _state(rng, t), rng.randint(0, 999)))
    return out


def fill(store: OnlineStore, records: list[OnlineRecord]) -> float:
    started = time.perf_counter()
    for i in range(0, len(records), WRITE_BATCH):
        store.upsert(records[i : i + WRITE_BATCH], ttl_ms=DAY_MS)
    return time.perf_counter() - started


def _busy_cores(window_s: float) -> float:
    """Cores the whole machine kept busy over `window_s` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            parts = [int(x) for x in fh.readline().split()[1:]]
        return sum(parts) - parts[3] - parts[4], sum(parts)

    busy0, total0 = sample()
    time.sleep(window_s)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)


def settle(limit_s: float = 60.0) -> float:
    """Wait until flushes and compactions after a fill are done (the machine is nearly idle).

    Returns the seconds waited; gives up after `limit_s` (e.g. when something else keeps the machine busy).
    """
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s and _busy_cores(1.0) > 0.25:
        pass
    return round(time.perf_counter() - started, 1)


def requests(n: int, entities: int, seed: int) -> list[list[RecordKey]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        z, c = f"zone-{rng.randrange(entities):06d}", f"city-{rng.randrange(entities):06d}"
        out.append([("zone_demand:v1", z), ("zone_supply:v1", z), ("city_eta:v1", c)])
    return out


def measure(store: OnlineStore, warmup: list[list[RecordKey]], timed: list[list[RecordKey]]) -> dict[str, Any]:
    for keys in warmup:
        store.get_many(keys)
    lat = np.empty(len(timed), dtype=np.int64)
    missing = 0
    clock = time.perf_counter_ns
    for i, keys in enumerate(timed):
        t = clock()
        found = store.get_many(keys)
        lat[i] = clock() - t
        missing += sum(1 for r in found.values() if r is None)
    us = lat / 1000
    return {
        "requests": len(timed),
        "keys_per_request": len(timed[0]) if timed else 0,
        "missing_keys": missing,
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p90_us": round(float(np.percentile(us, 90)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "max_us": round(float(us.max()), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def rocksdb(records: list[OnlineRecord], warmup: Any, timed: Any) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="affresco-bench-online-"))
    try:
        with open_store("rocksdb", path=root / "db") as store:
            fill_s = fill(store, records)
            settle_s = settle()
            owner = measure(store, warmup, timed)
            with open_store("rocksdb", path=root / "db", access="secondary", secondary_path=root / "sec") as second:
                secondary = measure(second, warmup, timed)
            with open_store(
                "rocksdb", path=root / "db", access="secondary", secondary_path=root / "sec2", catch_up_interval_ms=100
            ) as second:
                secondary_100 = measure(second, warmup, timed)
        size_mb = sum(p.stat().st_size for p in (root / "db").rglob("*") if p.is_file()) / 2**20
    finally:
        shutil.rmtree(root, ignore_errors=True)
    owner["fill_s"] = round(fill_s, 2)
    owner["settle_s"] = settle_s
    owner["db_mb"] = round(size_mb, 1)
    return {"rocksdb": owner, "rocksdb_secondary": secondary, "rocksdb_secondary_catch_up_100ms": secondary_100}


def cassandra(records: list[OnlineRecord], warmup: Any, timed: Any) -> dict[str, Any]:
    from state.cassandra.options import CassandraSettings
    from state.cassandra.session import close, connect

    keyspace = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with open_store("cassandra", keyspace=keyspace) as store:
            fill_s = fill(store, records)
            settle_s = settle()
            per_key = measure(store, warmup, timed)
        with open_store("cassandra", keyspace=keyspace, read_mode="in_per_group", create_schema=False) as store:
            in_per_group = measure(store, warmup, timed)
    finally:
        session = connect(CassandraSettings())
        try:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
        finally:
            close(session)
    per_key["fill_s"] = round(fill_s, 2)
    per_key["fill_records_per_s"] = round(len(records) / fill_s)
    per_key["settle_s"] = settle_s
    return {"cassandra": per_key, "cassandra_in_per_group": in_per_group}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000, help="records per group")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-cassandra", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    records = make_records(args.records, args.seed)
    warmup = requests(args.warmup, args.records, args.seed + 1)
    timed = requests(args.requests, args.records, args.seed + 2)
    gc.collect()
    stores = rocksdb(records, warmup, timed)
    if not args.skip_cassandra:
        stores |= cassandra(records, warmup, timed)
    targets = {"rocksdb_p99_us": 200, "cassandra_p99_us": 2000}
    result = {
        "bench": "online_get",
        "records_per_group": args.records,
        "state_bytes_mean": round(sum(len(r.state) for r in records) / len(records)),
        "stores": stores,
        "targets": targets,
        "target_met": {
            name: figures["p99_us"] < targets["rocksdb_p99_us" if name.startswith("rocksdb") else "cassandra_p99_us"]
            for name, figures in stores.items()
        },
        "load_avg_1m_at_start": round(load, 2),
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
