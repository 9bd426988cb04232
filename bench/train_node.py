"""One partition node trained by a process of its own: the contender `bench.train` runs once per node.

The alternative to training every node in one job (the one the Michelangelo paper argues against:
one training job per city). This process does what the one job does for its node, by the same
code, minus the fallback comparison: it imports the libraries, reads the whole persisted training
set, selects its node's rows (a copy), builds the input matrix with `ModelInputs.matrix`, splits at
the cut-off computed once from the whole set, runs the spec's trials with the spec's trainer, keeps
the best by the validation metric, exports it to ONNX and checks parity. It prints one JSON line:
its rows, its figures and where its time went (`overhead_s`: from being spawned to its first fit).

    python -m bench.train_node --parquet ts.parquet --node global/US/nyc --values '["US", "nyc"]' \
        --cutoff-ms 1767700097137 [--threads 1] [--spawned-at <time.time() of the parent>]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

STARTED = time.time()  # before the libraries are imported: they are part of this process's cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parquet", required=True, help="the persisted training set (the whole of it)")
    parser.add_argument("--spec", default="models/specs/eta.yaml")
    parser.add_argument("--node", required=True, help="the node's id, e.g. global/US/nyc")
    parser.add_argument("--values", required=True, help="its partition values as a JSON list, e.g. '[\"US\"]'")
    parser.add_argument("--cutoff-ms", type=int, required=True, help="the validation cut-off of the whole set")
    parser.add_argument("--threads", type=int, default=1, help="threads per fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spawned-at", type=float, default=None, help="time.time() when the parent spawned us")
    args = parser.parse_args()
    spawned = args.spawned_at if args.spawned_at is not None else STARTED
    values: list[str] = json.loads(args.values)

    # -- imports ---------------------------------------------------------------------------------
    t = time.time()
    from pathlib import Path

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import yaml

    import processors
    from backfill.training import label_times
    from models.metrics import LOWER_IS_BETTER, metrics_for
    from models.onnx import OnnxModel, check_parity
    from models.search import trials
    from models.trainers import get_trainer
    from models.training import PARITY_ROWS
    from models.validate import label_schema_of, load_model_spec
    from processors.definitions import load_groups

    # The libraries the fits and the export use, imported lazily by the trainer and the ONNX code.
    library = yaml.safe_load(Path(args.spec).read_text())["trainer"]["library"]
    get_trainer(library).versions()
    OnnxModel.version()
    imported = time.time()

    # -- the spec --------------------------------------------------------------------------------
    groups = {g.name: g for g in load_groups([Path(processors.__file__).parent / "features"])}
    definition = load_model_spec(Path(args.spec), groups, label_schema_of)
    spec = definition.spec
    trainer = get_trainer(spec.trainer.library)
    chosen = trials(spec.trainer.params, spec.trainer.search)
    specced = time.time()

    # -- read the whole training set, select this node's rows (a copy) --------------------------
    table = pq.read_table(args.parquet)
    rows_read = table.num_rows
    read = time.time()
    keep = pc.is_valid(table.column(spec.label))  # a row without a label teaches nothing (as in the job)
    for column, value in zip(definition.partition_columns, values, strict=False):
        keep = pc.and_(keep, pc.equal(pc.cast(table.column(column), pa.string()), value))
    table = table.filter(pc.fill_null(keep, False))
    selected = time.time()

    # -- the input matrix (the code training and serving share), the same time cut-off ----------
    inputs = definition.inputs
    n = table.num_rows
    present = set(table.column_names)
    columns = {name: table.column(name).to_pylist() for name in inputs.columns_needed if name in present}
    x = inputs.matrix(columns, n)
    y = table.column(spec.label).to_numpy(zero_copy_only=False).astype(np.float64)
    is_train = label_times(table, spec.training_set.time_field) < args.cutoff_ms
    train, valid = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    first_fit = time.time()

    # -- the trials, the best by the validation metric -------------------------------------------
    metric = definition.fallback_metric
    fitted = []
    fit_s = 0.0
    for params in chosen:
        started = time.time()
        model = trainer.fit(spec.task, x[train], y[train], params, threads=args.threads, seed=args.seed)
        fit_s += time.time() - started
        score = metrics_for(spec.task, y[valid], model.predict(x[valid])).get(metric, np.nan) if len(valid) else np.nan
        fitted.append((params, model, float(score)))
    lower = LOWER_IS_BETTER[metric]
    scored = [f for f in fitted if not np.isnan(f[2])] or fitted
    params, model, score = min(scored, key=lambda f: f[2] if lower else -f[2])
    fitted_at = time.time()

    # -- export to ONNX, the parity gate ---------------------------------------------------------
    export = model.to_onnx()
    onnx = OnnxModel(export.model, export.output, export.column)
    sample = np.concatenate([valid, train])[:PARITY_ROWS]
    parity = check_parity(model.predict(x[sample]), onnx.predict(x[sample]), what=f"node {args.node}")
    done = time.time()

    print(
        json.dumps(
            {
                "node": args.node,
                "rows_read": rows_read,
                "rows": n,
                "rows_train": len(train),
                "rows_validation": len(valid),
                "fits": len(chosen),
                "threads": args.threads,
                "best": {metric: score, "params": params},
                "trials": [{metric: s, "params": p} for p, _, s in fitted],
                "onnx_bytes": len(export.model),
                "parity_max_abs_diff": parity.max_abs_diff,
                "overhead_s": round(first_fit - spawned, 3),
                "startup_s": round(STARTED - spawned, 3),
                "imports_s": round(imported - t, 3),
                "spec_s": round(specced - imported, 3),
                "read_s": round(read - specced, 3),
                "select_s": round(selected - read, 3),
                "matrix_s": round(first_fit - selected, 3),
                "fit_s": round(fit_s, 3),
                "score_s": round(fitted_at - first_fit - fit_s, 3),
                "export_s": round(done - fitted_at, 3),
                "total_s": round(done - spawned, 3),
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )
    sys.stdout.flush()


def _peak_rss_mb() -> float | None:
    """This process's own peak (VmHWM; `getrusage` would report the parent's, inherited across exec)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


if __name__ == "__main__":
    main()
