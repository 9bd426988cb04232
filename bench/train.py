"""Benchmark: training the demo's partitioned ETA model (global → country → city) in one job, against
one process per node, from the same persisted training set; its bundle; ONNX Runtime inference; quality.

Prints one JSON line. Target: the one job ≥ 3x faster than one process per node (`target_speedup`).

The training set is the simulator's (`simulated_training_set`, built in memory: no broker), written
to a temporary Parquet file, the one persisted training set both contenders read:

1. one job: read the file, `train_partitioned` (every node and trial, 2 fits at once, one thread
   each; every serving node exported to ONNX through the parity gate);
2. one process per node (`bench.train_node`): each imports the libraries, reads the file, copies
   its node's rows, builds their input matrix, splits at the same cut-off, runs the same trials
   and exports the best through the same gate (no fallback comparison), 2 processes at once, one
   thread per fit. `overhead_s` is the time a process spends before its first fit.

A node under `partitions.min_rows` training rows is trained by neither. The simulation and the
join are timed apart (`simulate_join_s`), as part of neither contender.

    python -m bench.train [--events 1100000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import processors
from backfill.resources import peak_rss_mb
from backfill.training import label_times
from bench._machine import machine
from models.onnx import OnnxModel
from models.publish import TrainingSetRef, write_model_bundle
from models.simulated import simulated_training_set
from models.split import TimeSplit
from models.training import TrainingOptions, TrainingResult, train_partitioned
from models.validate import ModelDefinition, label_schema_of, load_model_spec
from processors.definitions import load_groups

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "models" / "specs" / "eta.yaml"
TARGET_SPEEDUP = 3
PHASES = ("startup", "imports", "spec", "read", "select", "matrix")  # before a process's first fit


def log(message: str) -> None:
    print(f"[bench.train] {message}", file=sys.stderr, flush=True)


def percentile_us(samples_ns: list[int], q: float) -> float:
    return round(float(np.percentile(samples_ns, q)) / 1000, 1)


def one_job(definition: ModelDefinition, path: Path, workers: int) -> tuple[TrainingResult, pa.Table, dict[str, Any]]:
    """Read the persisted set and train every node in one job; the phases from its progress hook."""
    last_fit = [0.0]

    def progress(what: str, done: int, planned: int) -> None:
        last_fit[0] = time.perf_counter()
        log(f"one job: fit {done}/{planned} ({what})")

    started = time.perf_counter()
    table = pq.read_table(path)
    read = time.perf_counter()
    result = train_partitioned(definition, table, TrainingOptions(workers=workers), progress)
    done = time.perf_counter()
    run_started = done - result.seconds  # `result.seconds` is the run: fits, export and evaluation
    figures = {
        "seconds": round(done - started, 2),
        "read_s": round(read - started, 3),
        # the matrix, the split and the tree, once for every node
        "prepare_s": round(run_started - read, 2),
        # up to the end of the last fit: every level's fits, the fallback decisions of all but the last
        "fitting_s": round(last_fit[0] - run_started, 2),
        # the last level's decisions, the ONNX export and parity gate of every serving node, the metrics
        "export_evaluate_s": round(done - last_fit[0], 2),
        "fit_thread_s": round(sum(r.fit_seconds for r in result.nodes.values()), 2),
        "workers": workers,
        "threads_per_fit": max(1, TrainingOptions().cores // workers),
    }
    return result, table, figures


def per_node(
    result: TrainingResult, path: Path, cutoff_ms: int, parallel: int
) -> tuple[list[dict[str, Any]], float, list[str]]:
    """One `bench.train_node` process per trainable node of the same tree, `parallel` at once."""
    min_rows = result.definition.spec.partitions.min_rows
    nodes = [n for n in result.tree.nodes.values() if result.nodes[n.id].rows_train >= min_rows]
    skipped = [n.id for n in result.tree.nodes.values() if result.nodes[n.id].rows_train < min_rows]
    threads = max(1, (os.cpu_count() or 1) // parallel)

    def run(node: Any) -> dict[str, Any]:
        command = [sys.executable, "-m", "bench.train_node", "--parquet", str(path), "--spec", str(SPEC),
                   "--node", node.id, "--values", json.dumps(list(node.values)), "--cutoff-ms", str(cutoff_ms),
                   "--threads", str(threads), "--spawned-at", repr(time.time())]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode:
            msg = f"bench.train_node {node.id} exited with {done.returncode}:\n{done.stderr[-4000:]}"
            raise RuntimeError(msg)
        figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"per node: {node.id} in {figures['total_s']:.1f} s (overhead {figures['overhead_s']:.1f} s)")
        return figures

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        children = list(pool.map(run, nodes))
    return children, time.perf_counter() - started, skipped


def inference(result: TrainingResult, table: pa.Table, calls: int, warmup: int, batches: int) -> dict[str, Any]:
    """ONNX Runtime on the global node's model: single rows, then 1,000-row batches; XGBoost's own predict."""
    definition = result.definition
    label = definition.spec.label
    if table.column(label).null_count:  # the rows the job trained on (and split)
        table = table.filter(pc.is_valid(table.column(label)))
    valid = table.filter(pa.array(result.split.validation))
    inputs = definition.inputs
    columns = {n: valid.column(n).to_pylist() for n in inputs.columns_needed if n in valid.column_names}
    x = inputs.matrix(columns, valid.num_rows)
    n = len(x)
    root = result.nodes["global"]
    onnx, native = root.onnx, root.model
    assert onnx is not None and native is not None  # the root always serves itself
    clock = time.perf_counter_ns
    for i in range(warmup):
        onnx.predict(x[i % n : i % n + 1])
    single: list[int] = []
    for i in range(calls):
        row = x[i % n : i % n + 1]
        t = clock()
        onnx.predict(row)
        single.append(clock() - t)
    batch_rows = 1000
    batch: list[int] = []
    for k in range(batches + 5):  # the first 5 warm up
        start = (k * batch_rows) % max(1, n - batch_rows)
        rows = x[start : start + batch_rows]
        t = clock()
        onnx.predict(rows)
        if k >= 5:
            batch.append(clock() - t)
    native_calls = 2000
    for i in range(100):
        native.predict(x[i % n : i % n + 1])
    xgb: list[int] = []
    for i in range(native_calls):
        row = x[i % n : i % n + 1]
        t = clock()
        native.predict(row)
        xgb.append(clock() - t)
    return {
        "model": "global",
        "onnxruntime": OnnxModel.version(),
        "single_row_calls": calls,
        "single_row_p50_us": percentile_us(single, 50),
        "single_row_p99_us": percentile_us(single, 99),
        "batch_rows": batch_rows,
        "batches": batches,
        "batch_median_ms": round(statistics.median(batch) / 1e6, 3),
        "batch_rows_per_s": round(batch_rows / (statistics.median(batch) / 1e9)),
        "xgboost_single_row_calls": native_calls,
        "xgboost_single_row_p50_us": percentile_us(xgb, 50),
        "xgboost_single_row_p99_us": percentile_us(xgb, 99),
    }


def bundle_figures(result: TrainingResult, tmp: Path, path: Path) -> dict[str, Any]:
    uri = tmp / "bundle"
    dummy = TrainingSetRef(str(path), "0" * 64, len(result.split.train), None)
    write_model_bundle(result, str(uri), 1, dummy)
    files = [p for p in uri.rglob("*") if p.is_file()]
    return {
        "bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "onnx_files": sum(p.suffix == ".onnx" for p in files),
        "onnx_bytes": sum(p.stat().st_size for p in files if p.suffix == ".onnx"),
        "manifest_bytes": (uri / "manifest.json").stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_100_000, help="simulated events (≈ 7 days; ≈ 1 in 6 a label)")
    parser.add_argument("--seed", type=int, default=7, help="the simulator's seed")
    parser.add_argument("--workers", type=int, default=2, help="fits at once in the one job")
    parser.add_argument("--parallel", type=int, default=2, help="per-node processes at once")
    parser.add_argument("--calls", type=int, default=20_000, help="single-row ONNX Runtime calls timed")
    parser.add_argument("--warmup", type=int, default=1_000, help="single-row calls before the timed ones")
    parser.add_argument("--batches", type=int, default=200, help="1,000-row batches timed")
    args = parser.parse_args()
    began = time.perf_counter()
    groups = {g.name: g for g in load_groups([Path(processors.__file__).parent / "features"])}
    definition = load_model_spec(SPEC, groups, label_schema_of)

    log(f"simulating {args.events:,} events and joining the features…")
    started = time.perf_counter()
    sim = simulated_training_set(definition, args.events, seed=args.seed, start_ms=T0)
    simulate_join_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "training_set.parquet"
        started = time.perf_counter()
        pq.write_table(sim.table, path)
        write_s = time.perf_counter() - started
        parquet_mb = round(path.stat().st_size / 2**20, 1)
        log(f"{sim.table.num_rows:,} label rows in {simulate_join_s:.1f} s, written to {path} in {write_s:.1f} s")

        log(f"one job: every node, {args.workers} fits at once…")
        result, table, job = one_job(definition, path, args.workers)
        log(f"one job: {job['seconds']:.1f} s")

        # The cut-off of the whole set, computed once, for every per-node process.
        labeled = table.filter(pc.is_valid(table.column(definition.spec.label)))
        split = TimeSplit.of(label_times(labeled, definition.spec.training_set.time_field),
                             definition.spec.validation.fraction)  # fmt: skip
        assert split.cutoff_ms == result.split.cutoff_ms
        log(f"per node: one process per node, {args.parallel} at once…")
        children, per_node_s, skipped = per_node(result, path, split.cutoff_ms, args.parallel)
        log(f"per node: {per_node_s:.1f} s")

        # The same rows and the same best models on both sides (same data, same seed, one thread).
        metric = definition.fallback_metric
        for child in children:
            node = result.nodes[child["node"]]
            assert (child["rows_train"], child["rows_validation"]) == (node.rows_train, node.rows_validation), child
        same_best = max(
            abs(c["best"][metric] - min(t[metric] for t in result.nodes[c["node"]].trials)) for c in children
        )

        log("bundle…")
        bundle = bundle_figures(result, tmp, path)
        log("inference…")
        serving = inference(result, table, args.calls, args.warmup, args.batches)

    floor_rows = np.flatnonzero(result.split.validation)
    if result.rows_dropped:  # the split indexes the labeled rows; the simulator's table has every row
        floor_rows = np.flatnonzero(pc.is_valid(sim.table.column(definition.spec.label)).to_numpy(False))[floor_rows]
    floor = sim.noise_floor_rmse(floor_rows.tolist())
    whole = result.metrics
    split_json = result.split.to_json()
    nodes = result.nodes.values()
    overheads = [c["overhead_s"] for c in children]

    def total(key: str) -> float:
        return round(sum(c[key] for c in children), 2)

    out = {
        "bench": "train",
        "model": definition.name,
        "events": args.events,
        "seed": args.seed,
        "rows": sim.table.num_rows,
        "rows_without_label": result.rows_dropped,
        "rows_train": split_json["rows_train"],
        "rows_validation": split_json["rows_validation"],
        "inputs": len(definition.inputs.inputs),
        "nodes": len(result.nodes),
        "nodes_trained": sum(r.trained for r in nodes),
        "nodes_serving_own_model": sum(r.serves_itself for r in nodes),
        "nodes_falling_back": sum(not r.serves_itself for r in nodes),
        "nodes_skipped_min_rows": len(skipped),
        "trials_per_node": len(result.nodes["global"].trials),
        "fits": result.fits,
        "simulate_join_s": round(simulate_join_s, 1),
        "write_parquet_s": round(write_s, 2),
        "parquet_mb": parquet_mb,
        "one_job": job,
        "per_node": {
            "seconds": round(per_node_s, 2),
            "processes": len(children),
            "parallel": args.parallel,
            "threads_per_fit": children[0]["threads"] if children else None,
            "fits": sum(c["fits"] for c in children),
            "overhead_s_total": round(sum(overheads), 2),
            "overhead_s_mean": round(statistics.mean(overheads), 2) if overheads else None,
            "overhead_s_max": max(overheads, default=None),
            "overhead_breakdown_s": {k: total(f"{k}_s") for k in PHASES},
            "fit_s_total": total("fit_s"),
            "score_s_total": total("score_s"),
            "export_s_total": total("export_s"),
            "process_s_total": total("total_s"),
            "peak_rss_mb_max": max((c["peak_rss_mb"] or 0 for c in children), default=None),
            "best_score_max_diff_vs_one_job": same_best,
        },
        "speedup": round(per_node_s / job["seconds"], 2),
        "target_speedup": TARGET_SPEEDUP,
        "target_met": per_node_s / job["seconds"] >= TARGET_SPEEDUP,
        "bundle": bundle,
        "inference": serving,
        "quality": {
            "metric": "rmse",
            "model": round(whole["model"]["rmse"], 2),
            "baseline_global_mean": round(whole["baseline_global_mean"]["rmse"], 2),
            "baseline_node_mean": round(whole["baseline_node_mean"]["rmse"], 2),
            "noise_floor": round(floor, 2),
            "model_over_noise_floor": round(whole["model"]["rmse"] / floor, 3),
            "rows": len(floor_rows),
        },
        "wall_s": round(time.perf_counter() - began, 1),
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
