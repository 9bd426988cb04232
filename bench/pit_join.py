"""Benchmark: point-in-time join of label rows against 3 feature groups (`affresco training-set`'s core).

Prints one JSON line (`seconds`: the median of `--repeat` joins). Target (issue 4): 1M label rows
against 3 groups in < 10 s on 2 cores.
Labels are the simulator's completed trips (features as of the request time); the groups' source
events are the simulated events themselves, so no broker is needed and only the join is timed.

    python -m bench.pit_join [--events 5000000] [--labels 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import time
from pathlib import Path

import pyarrow as pa
import yaml

from backfill.resources import peak_rss_mb
from backfill.training import FeatureRequest, point_in_time_join
from bench._machine import machine
from processors.definitions import FeatureGroup, compile_spec
from processors.engine import SourceRow
from streams.sim import simulate

T0 = 1_767_225_600_000
FEATURES = Path(__file__).resolve().parents[1] / "processors" / "features" / "rides"
GROUPS = ("zone_demand", "city_eta", "rider_history")


def _group(name: str) -> FeatureGroup:
    doc = yaml.safe_load((FEATURES / f"{name}.yaml").read_text())
    doc["ttl"] = "3650d"  # every label has values: the join does its full work
    group, problems = compile_spec(doc, name)
    if group is None:
        raise RuntimeError(problems)
    return group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000, help="simulated events (≈ 1 in 5 is a label)")
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2, help="processes joining groups in parallel")
    parser.add_argument("--repeat", type=int, default=3, help="joins timed (the events are simulated once)")
    args = parser.parse_args()
    started = time.perf_counter()
    groups = [_group(name) for name in GROUPS]
    by_type: dict[str, list[SourceRow]] = {g.event_type: [] for g in groups}
    labels: list[dict[str, object]] = []
    for offset, event in enumerate(simulate(args.events, seed=3, start_ms=T0)):
        fields = event.__dict__
        kind = event.type_name()
        if kind in by_type:
            by_type[kind].append(SourceRow(fields, 0, offset))
        if kind == "trip_completed" and len(labels) < args.labels:
            labels.append(fields)
    table = pa.Table.from_pylist(labels)
    del labels
    prepare_s = time.perf_counter() - started
    requests = [FeatureRequest(g, tuple(g.feature_names), next(iter(g.key.fields))) for g in groups]
    events = {g.ref: by_type[g.event_type] for g in groups}
    rss_before = peak_rss_mb()
    gc.collect()
    runs = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        joined = point_in_time_join(table, "requested_at", requests, events, workers=args.workers)
        runs.append(round(time.perf_counter() - started, 2))
    seconds = statistics.median(runs)
    result = {
        "bench": "pit_join",
        "labels": joined.num_rows,
        "groups": len(groups),
        "features": sum(len(r.features) for r in requests),
        "source_events": {g.name: len(events[g.ref]) for g in groups},
        "seconds": seconds,
        "runs_s": runs,
        "workers": args.workers,
        "labels_per_s": round(joined.num_rows / seconds),
        "non_null_share": round(
            sum(joined.num_rows - c.null_count for c in joined.columns[table.num_columns :])
            / (joined.num_rows * sum(len(r.features) for r in requests)),
            4,
        ),
        "rss_before_join_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_worker_mb": peak_rss_mb(resource.RUSAGE_CHILDREN),
        "prepare_s": round(prepare_s, 1),
        "target_s": 10,
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
