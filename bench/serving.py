"""Benchmark: the HTTP prediction service (`affresco serve`) end to end, the load from another process.

Set-up (not timed), as `tests/integration/test_train.py` does it: simulated events produced to
fresh topics, a unique topic prefix (`bench.<uuid>`) and a temporary `AFFRESCO_DATA_DIR`; the
demo's feature groups (renamed after the topics) run `--until-idle` into RocksDB; a small ETA model
(`models/specs/eta.yaml`, groups renamed, fewer trees, no search) trained and deployed as
`eta@prod`; `affresco serve` started in its own process, waited for on `/readyz`.

The request rows are the simulated `trip_requested` events (pickup_zone, city, country, rider_id,
distance_km, requested_at, join_key): features as of each request's own time, from the store.

The load comes from `bench.serving_load` (a separate process: httpx AsyncClient on uvloop, one
client per keep-alive connection, requests built beforehand), one new process per phase:

1. the generator alone against a canned-response HTTP server (`null-server`): what the generator
   itself can do on this machine, at each fixed rate and closed loop;
2. `GET /healthz` (an empty route) at the lowest rate: the HTTP stack's own floor;
3. single-row requests at fixed rates (`--rates`), open loop: latency from each request's
   intended send time, so queueing is counted (no coordinated omission);
4. the maximum throughput: `--connections` closed loops;
5. `--batch-rows`-row requests, one after the other.

`latency_decomposition` splits the mean latency at the lowest rate with the differences of phases
1, 2 and 3, measured a few seconds apart: on a busy or throttled machine a small term can come out
negative (its noise is a few tenths of a millisecond).

A 200 whose `degraded` is set (the store overran its budget or failed: every feature missing) is
counted apart (`degraded`), and fails the targets as an error does.

Each phase also reports the server-side `affresco_predict_seconds` and `affresco_online_store_seconds`
histograms over its window (from `/metrics`; the handler's own time, without HTTP, request parsing
and response serialisation), and the CPU used by the server, the generator, the broker and the machine.
Then the server is stopped and `affresco predict-batch` scores every simulated trip request from the log.

Targets: p99 ≤ 2 ms at 1,000 req/s; ≥ 3,000 req/s at most; 100-row batch p99 < 20 ms;
p99 ≤ 5 ms at 500 req/s with Cassandra; predict-batch ≥ 500k rows/s.

The serving phases run twice: on RocksDB (the processor's embedded store, read by the service as
a secondary instance), then on Cassandra (the groups processed again into a fresh keyspace,
dropped at the end; fixed rates of 200 and 500 req/s, the closed loop and the batches).

Prints one JSON line. Needs a running broker and Cassandra node (`affresco infra up --with cassandra`).

    python -m bench.serving [--events 120000] [--rates 200,500,1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench._machine import machine
from streams.admin import TopicAdmin
from streams.settings import KafkaSettings
from tests.integration.processor_helpers import demo_group_docs, produce_simulation, write_yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "models" / "specs" / "eta.yaml"
GROUPS = ("zone_demand", "zone_supply", "city_eta", "rider_history")
TARGETS = {"p99_ms_at_1000_per_s": 2.0, "max_requests_per_s": 3000, "batch_p99_ms": 20.0,
           "cassandra_p99_ms_at_500_per_s": 5.0, "predict_batch_rows_per_s": 500_000}  # fmt: skip
CASSANDRA_RATES = [200.0, 500.0]
EVENT_COUNTS = ("prediction_events_queued", "prediction_events_pending", "prediction_events_failed")
ROW_FIELDS = ("pickup_zone", "city", "country", "rider_id", "distance_km")


def log(message: str) -> None:
    print(f"[bench.serving] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli() -> str:
    return str(Path(sys.executable).parent / "affresco")


def _affresco(args: list[str], env: dict[str, str], what: str) -> tuple[str, float]:
    """Runs `affresco <args>`; its stdout and its wall time; fails with its stderr's tail."""
    started = time.perf_counter()
    done = subprocess.run([_cli(), *args], env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode:
        msg = f"{what}: `affresco {' '.join(args[:2])}` exited with {done.returncode}:\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    return done.stdout, seconds


def _last_json(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def eta_spec(trips: str, suffix: str) -> dict[str, Any]:
    """`models/specs/eta.yaml` on the fresh topics: its groups renamed `<group>_<suffix>`, a smaller trainer."""
    doc: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    names = re.compile(r"\b(" + "|".join(GROUPS) + r")(?=:|__|$)")

    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return names.sub(rf"\1_{suffix}", value)
        if isinstance(value, dict):
            return {rename(k): rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    doc["features"] = rename(doc["features"])
    doc["training_set"] = {**doc["training_set"], "labels": trips,
                           "entities": rename(doc["training_set"]["entities"])}  # fmt: skip
    doc["partitions"] = {**doc["partitions"], "min_rows": 400, "min_validation_rows": 50}  # a small simulation
    doc["trainer"] = {"library": "xgboost", "params": {"n_estimators": 60, "max_depth": 5}}
    return doc


def _request_rows(events: list[Any], n: int) -> list[dict[str, Any]]:
    """The last `n` simulated trip requests as request rows, asked 1 s after the last simulated event: as a
    live request comes after everything the processor has folded (not behind the stored state)."""
    requests = [e for e in events if e.type_name() == "trip_requested"][-n:]
    now = max(e.event_time for e in events) + 1000
    return [{**{f: getattr(e, f) for f in ROW_FIELDS}, "requested_at": now, "join_key": e.trip_id}
            for e in requests]  # fmt: skip


def _broker_pid() -> int | None:
    """The local broker's pid, from `affresco infra`'s pid file (its CPU is read, never signalled)."""
    try:
        pid = int((ROOT / ".affresco" / "run" / "kafka.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then SIGKILL after 20 s: how it ended."""
    if proc.poll() is not None:
        return f"exited by itself ({proc.returncode})"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
        return "SIGTERM"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return "SIGKILL"


def _wait_ready(base: str, proc: subprocess.Popen[bytes], server_log: Path, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"affresco serve exited ({proc.returncode}):\n{server_log.read_text(errors='replace')[-3000:]}"
            raise RuntimeError(msg)
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2)
            if ready.status_code == 200 and ready.json()["models"].get("eta"):
                body: dict[str, Any] = ready.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    msg = f"affresco serve not ready after {timeout_s:.0f} s:\n{server_log.read_text(errors='replace')[-3000:]}"
    raise RuntimeError(msg)


class Load:
    """Runs `bench.serving_load` phases, each in a new process, against one URL."""

    def __init__(self, url: str, bodies: Path, extra: list[str], env: dict[str, str], loop: str) -> None:
        self.url, self.bodies, self.extra, self.env, self.loop = url, bodies, extra, env, loop

    def run(self, what: str, *args: str) -> dict[str, Any]:
        command = [sys.executable, "-m", "bench.serving_load", "--url", self.url, "--bodies", str(self.bodies),
                   *self.extra, *args, "--loop", self.loop]  # fmt: skip
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300)
        if done.returncode:
            msg = f"bench.serving_load ({what}) exited with {done.returncode}:\n{done.stderr[-3000:]}"
            raise RuntimeError(msg)
        result = _last_json(done.stdout)
        rate = result.get("achieved_rate_per_s", result.get("requests_per_s"))
        log(f"{what}: {rate} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, errors {result['errors']}, "
            f"degraded {result['degraded']}, "
            f"handler p99 ≈ {result['server_histograms']['predict_seconds'].get('p99_ms')} ms, "
            f"CPU: server {result['server_cpu_cores']}, generator {result['generator_cpu_cores']}, "
            f"broker {result['broker_cpu_cores']}, machine {result['machine_cpu_cores_busy']}")  # fmt: skip
        return result


def _per_request_ms(cores: float | None, rate: float) -> float | None:
    return None if cores is None or not rate else round(cores / rate * 1000, 3)


def _decomposition(predict: dict[str, Any], healthz: dict[str, Any], alone: dict[str, Any]) -> dict[str, Any]:
    """Where a single-row request's mean latency goes at the lowest fixed rate (means add up; p50s do not)."""
    handler = predict["server_histograms"]["predict_seconds"].get("mean_ms")
    if handler is None:
        return {}
    return {
        "rate_per_s": predict["rate_per_s"],
        "client_mean_ms": predict["mean_ms"],
        # the generator against a canned 200: its own pacing, httpx, the loopback
        "generator_and_loopback_mean_ms": alone["mean_ms"],
        # /healthz minus the above: uvicorn, routing, the threadpool hop of a sync route
        "http_stack_floor_mean_ms": round(healthz["mean_ms"] - alone["mean_ms"], 3),
        # the predict handler itself (the affresco_predict_seconds histogram)
        "handler_mean_ms": handler,
        "of_which_store_and_features_mean_ms": predict["server_histograms"]["online_store_seconds"].get("mean_ms"),
        # the rest: request-body and response-model (de)serialisation, validation, waiting for the GIL and cores
        "rest_mean_ms": round(predict["mean_ms"] - healthz["mean_ms"] - handler, 3),
    }


def _busy_cores(seconds: float) -> float:
    """How many cores the whole machine keeps busy over `seconds` (/proc/stat)."""

    def busy() -> tuple[float, float]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
        return sum(values) - values[3] - values[4], time.perf_counter()

    b0, t0 = busy()
    time.sleep(seconds)
    b1, t1 = busy()
    return round((b1 - b0) / os.sysconf("SC_CLK_TCK") / (t1 - t0), 2)


def _code() -> dict[str, Any]:
    """The commit measured, and whether the serving code differed from it (the working tree is what runs)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    served = ("serving", "affresco/commands/serve.py", "affresco/commands/predict.py", "state", "processors",
              "models", "streams")  # fmt: skip
    dirty = git("status", "--porcelain", "--", *served)
    return {"commit": git("rev-parse", "--short", "HEAD"), "served_code_modified": bool(dirty)}


def _breakdown(phase: dict[str, Any]) -> dict[str, Any]:
    """Client-side vs in-handler time of a phase (means: the histogram's quantiles are bucket estimates),
    and the CPU each process spent per answered request."""
    server = phase["server_histograms"]["predict_seconds"]
    store = phase["server_histograms"]["online_store_seconds"]
    if not server.get("count"):
        return {}
    rate = phase.get("achieved_rate_per_s", phase.get("requests_per_s", 0.0))
    return {
        "cpu_ms_per_request": {
            **{p: _per_request_ms(phase[f"{p}_cpu_cores"], rate) for p in ("server", "generator", "broker")},
            "machine": _per_request_ms(phase["machine_cpu_cores_busy"], rate),
        },
        "client_mean_ms": phase["mean_ms"],
        "handler_mean_ms": server["mean_ms"],
        "of_which_store_and_features_mean_ms": store.get("mean_ms"),  # the store read and the feature kernels
        "outside_handler_mean_ms": round(phase["mean_ms"] - server["mean_ms"], 3),  # HTTP, validation, queueing
        "client_p99_ms": phase["p99_ms"],
        "handler_p99_ms_bucket_estimate": server.get("p99_ms"),
    }


class Phases:
    """One `affresco serve` on one store: started, checked, loaded phase by phase, stopped."""

    def __init__(
        self, args: argparse.Namespace, work: Path, definitions: Path, rows: list[dict[str, Any]], singles: Path,
        batches: Path,
    ) -> None:  # fmt: skip
        self.args, self.work, self.definitions, self.rows = args, work, definitions, rows
        self.singles, self.batches = singles, batches

    def run(
        self, store: str, env: dict[str, str], rates: list[float], healthz_rate: float | None = None
    ) -> dict[str, Any]:
        args, k = self.args, self.args.batch_rows
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server_log = self.work / f"serve-{store}.log"
        started = time.perf_counter()
        with server_log.open("wb") as sink:  # its own session: stopping it can never reach this process
            command = [_cli(), "serve", "--port", str(port), "--store", store, "--workers", str(args.workers), "-d",
                       str(self.definitions)]  # fmt: skip
            server = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=self.work,
                                      start_new_session=True)  # fmt: skip
        try:
            ready = _wait_ready(base, server, server_log, 120)
            ready_s = round(time.perf_counter() - started, 1)
            log(f"serving {ready['models']} from {store} on {base} (pid {server.pid}) after {ready_s} s")
            check = httpx.post(f"{base}/v1/models/eta/predict", json={"rows": self.rows[:k]}, timeout=30)
            if check.status_code != 200:
                msg = f"a {k}-row request failed ({check.status_code}): {check.text[:2000]}"
                raise RuntimeError(msg)
            served = check.json()["rows"]
            from_store = sum(any(v is not None for v in r["features"].values()) for r in served)
            url = f"{base}/v1/models/eta/predict"
            background = _busy_cores(1.0)
            log(f"machine busy before the load: {background} cores (the idle server, the brokers, anything else)")
            broker = _broker_pid()
            extra = ["--metrics-url", f"{base}/metrics", "--server-pid", str(server.pid),
                     *(["--broker-pid", str(broker)] if broker else [])]  # fmt: skip
            load = Load(url, self.singles, extra, env, args.loop)
            healthz = None
            if healthz_rate is not None:
                log(f"open loop on /healthz (an empty route: the HTTP stack's floor): {healthz_rate:g} req/s…")
                healthz = Load(f"{base}/healthz", self.singles, extra, env, args.loop).run(
                    f"/healthz at {healthz_rate:g} req/s", "--mode", "open", "--method", "GET", "--rate",
                    str(healthz_rate), "--seconds", str(args.calibration_seconds), "--connections",
                    str(args.open_connections))  # fmt: skip
                healthz.pop("server_histograms", None)  # no predict requests in its window
            fixed = []
            for rate in rates:
                log(f"{store}: open loop, {rate:g} req/s for {args.seconds:g} s…")
                fixed.append(load.run(f"{store} {rate:g} req/s", "--mode", "open", "--rate", str(rate), "--seconds",
                                      str(args.seconds), "--connections", str(args.open_connections)))  # fmt: skip
            log(f"{store}: closed loop, {args.connections} connections for {args.seconds:g} s…")
            closed = load.run(f"{store} closed loop", "--mode", "closed", "--seconds", str(args.seconds),
                              "--connections", str(args.connections), "--warmup", "400")  # fmt: skip
            log(f"{store}: {args.batches} batch requests of {k} rows…")
            batch = Load(url, self.batches, extra, env, args.loop).run(
                f"{store} {k}-row batches", "--mode", "sequential", "--requests", str(args.batches), "--warmup", "20"
            )
            ready_after = httpx.get(f"{base}/readyz", timeout=5).json()
        finally:
            stopped = _stop(server)
            log(f"server on {store} stopped ({stopped})")
        for phase in (*fixed, closed, batch, *([healthz] if healthz else [])):
            phase.pop("generator", None)
        return {
            "serve_ready_s": ready_s,
            "nodes_in_answer": sorted({r["partition"] for r in served}),
            "rows_with_stored_features": f"{from_store}/{len(served)}",  # in a first {k}-row request
            "machine_busy_cores_before_load": background,  # all processes: others' work would show here
            "fixed_rate": fixed,
            "max_throughput": closed,
            "batch": {"rows_per_request": k, **batch},
            "breakdown": {f"{p['rate_per_s']:g}_per_s": _breakdown(p) for p in fixed}
            | {"closed_loop": _breakdown(closed), "batch": _breakdown(batch)},
            **({"healthz": healthz} if healthz else {}),
            "prediction_events": {k: ready_after[k] for k in EVENT_COUNTS},
            "server_stop": stopped,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=120_000, help="simulated events (trip requests ≈ 1 in 6)")
    parser.add_argument("--seed", type=int, default=3, help="the simulator's seed")
    parser.add_argument("--rates", default="200,500,1000", help="comma-separated fixed rates, requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="each fixed-rate and closed-loop phase")
    parser.add_argument("--open-connections", type=int, default=16, help="connections at most in the open loop")
    parser.add_argument("--connections", type=int, default=8, help="closed loops (connections) for the maximum")
    parser.add_argument("--batch-rows", type=int, default=100, help="rows per batch request")
    parser.add_argument("--batches", type=int, default=300, help="batch requests timed")
    parser.add_argument("--rows", type=int, default=5000, help="distinct request rows (the last trip requests)")
    parser.add_argument("--calibration-seconds", type=float, default=3.0, help="each generator-alone phase")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the generator's event loop")
    parser.add_argument("--workers", type=int, default=1, help="affresco serve --workers (1 measured best on 2 cores)")
    args = parser.parse_args()
    began = time.perf_counter()
    code = _code()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    settings = KafkaSettings()
    suffix = uuid.uuid4().hex[:8]
    trips, pings, prefix = f"bench.trips.{suffix}", f"bench.pings.{suffix}", f"bench.{suffix}"
    work = Path(tempfile.mkdtemp(prefix="affresco-bench-serving-"))
    env = {**os.environ, "AFFRESCO_DATA_DIR": str(work / "data"), "AFFRESCO_KAFKA_TOPIC_PREFIX": prefix,
           "AFFRESCO_ONLINE_STORE": "rocksdb"}  # fmt: skip
    keyspace = f"bench_{suffix}"
    null: subprocess.Popen[bytes] | None = None
    setup: dict[str, Any] = {}
    try:
        log(f"producing {args.events:,} simulated events to {trips}, {pings}…")
        started = time.perf_counter()
        events = produce_simulation(settings, trips, pings, args.events, seed=args.seed)
        setup["produce_s"] = round(time.perf_counter() - started, 1)
        definitions = write_yaml(demo_group_docs(trips, pings), work / "groups")
        spec = work / "eta.yaml"
        spec.write_text(yaml.safe_dump(eta_spec(trips, suffix), sort_keys=False))

        log("processing the feature groups into RocksDB (--until-idle)…")
        groups = [f"{g}_{suffix}" for g in GROUPS]
        _, process_s = _affresco(["process", "run", *groups, "--until-idle", "-d", str(definitions)], env,
                                          "process")  # fmt: skip
        log("training and deploying eta@prod…")
        out, train_s = _affresco(["train", "--spec", str(spec), "-d", str(definitions), "--deploy", "prod"],
                                          env, "train")  # fmt: skip
        trained = _last_json(out)
        setup |= {"process_s": round(process_s, 1), "train_s": round(train_s, 1)}

        rows = _request_rows(events, args.rows)
        singles, batches = work / "single.json", work / "batch.json"
        singles.write_text(json.dumps([{"rows": [r]} for r in rows]))
        k = args.batch_rows
        batches.write_text(json.dumps([{"rows": rows[i : i + k]} for i in range(0, len(rows) - k + 1, k)]))

        log("the generator alone, against a canned-response server…")
        null_port = _free_port()
        null = subprocess.Popen([sys.executable, "-m", "bench.serving_load", "--mode", "null-server", "--port",
                                 str(null_port)], cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True)  # fmt: skip
        assert null.stdout is not None
        null.stdout.readline()  # "listening"
        alone = Load(f"http://127.0.0.1:{null_port}/v1/models/eta/predict", singles, [], env, args.loop)
        seconds = ["--seconds", str(args.calibration_seconds)]
        null_closed = alone.run("generator alone, closed loop", "--mode", "closed", "--connections",
                                str(args.connections), *seconds)  # fmt: skip
        # the lowest rate last: next to /healthz and the first predict phase at that rate
        null_open = [alone.run(f"generator alone, {rate:g} req/s", "--mode", "open", "--rate", str(rate),
                               "--connections", str(args.open_connections), *seconds)
                     for rate in reversed(rates)][::-1]  # fmt: skip
        _stop(null)

        phases = Phases(args, work, definitions, rows, singles, batches)
        stores = {"rocksdb": phases.run("rocksdb", env, rates, healthz_rate=rates[0])}

        log("processing the feature groups into Cassandra (a fresh keyspace, --until-idle)…")
        cassandra_env = {**env, "AFFRESCO_ONLINE_STORE": "cassandra", "AFFRESCO_CASSANDRA_KEYSPACE": keyspace,
                         "AFFRESCO_DATA_DIR": str(work / "data-cassandra")}  # fmt: skip
        _, cassandra_process_s = _affresco(["process", "run", *groups, "--until-idle", "--store", "cassandra",
                                            "-d", str(definitions)], cassandra_env, "process (Cassandra)")  # fmt: skip
        setup["process_cassandra_s"] = round(cassandra_process_s, 1)
        stores["cassandra"] = phases.run("cassandra", cassandra_env, CASSANDRA_RATES)

        log("predict-batch over every simulated trip request…")
        output = work / "predictions.parquet"
        out, batch_wall = _affresco(["predict-batch", "--model", "eta@prod", "--input", trips, "--event-type",
                                     "trip_requested", "--output", str(output), "-d", str(definitions)], env,
                                    "predict-batch")  # fmt: skip
        predict_batch = {**_last_json(out), "process_wall_s": round(batch_wall, 2)}
        predict_batch.pop("out", None)
    finally:
        if null is not None and null.poll() is None:
            _stop(null)
        admin = TopicAdmin(settings)
        owned = [t for t in admin.names() if t in (trips, pings) or t.startswith(prefix + ".")]
        if owned:
            admin.delete(owned)
        _drop_keyspace(keyspace)
        shutil.rmtree(work, ignore_errors=True)

    for phase in (*null_open, null_closed):  # no affresco server: no histograms, no server CPU
        for key in ("generator", "server_histograms", "server_errors_by_kind", "server_cpu_cores"):
            phase.pop(key, None)
    rocksdb, cassandra = stores["rocksdb"], stores["cassandra"]
    at_max = next((p for p in rocksdb["fixed_rate"] if p["rate_per_s"] == 1000), rocksdb["fixed_rate"][-1])
    at_500 = next((p for p in cassandra["fixed_rate"] if p["rate_per_s"] == 500), cassandra["fixed_rate"][-1])
    result = {
        "bench": "serving",
        "model": {"name": "eta", "version": trained.get("version"), "alias": "prod"},
        "server": {"command": "affresco serve", "workers": args.workers, "http": "uvicorn (uvloop, httptools)"},
        "code": code,
        "events": args.events,
        "request_rows": len(rows),
        "setup_s": setup,
        "generator": {
            "process": "separate (bench.serving_load)",
            "client": f"httpx {httpx.__version__} AsyncClient",
            "loop": args.loop,
            "connection_per_client": True,
            "requests_prebuilt": True,
            "open_loop_connections": args.open_connections,
        },
        "stores": stores,
        "latency_decomposition": _decomposition(rocksdb["fixed_rate"][0], rocksdb["healthz"], null_open[0]),
        "generator_alone": {
            "server": "a canned 200 (bench.serving_load null-server: an asyncio protocol on uvloop)",
            "fixed_rate": null_open,
            "closed_loop": null_closed,
        },
        "predict_batch": predict_batch,
        "targets": TARGETS,
        "target_met": {
            "p99_ms_at_1000_per_s": _met(at_max, 1000, TARGETS["p99_ms_at_1000_per_s"]),
            "max_requests_per_s": rocksdb["max_throughput"]["requests_per_s"] >= TARGETS["max_requests_per_s"],
            "batch_p99_ms": rocksdb["batch"]["errors"] == rocksdb["batch"]["degraded"] == 0
            and rocksdb["batch"]["p99_ms"] < TARGETS["batch_p99_ms"],
            "cassandra_p99_ms_at_500_per_s": _met(at_500, 500, TARGETS["cassandra_p99_ms_at_500_per_s"]),
            "predict_batch_rows_per_s": predict_batch["rows_per_s"] >= TARGETS["predict_batch_rows_per_s"],
        },
        "wall_s": round(time.perf_counter() - began, 1),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": machine(),
    }
    print(json.dumps(result))


def _met(phase: dict[str, Any], rate: float, p99_ms: float) -> bool:
    """A fixed-rate phase at `rate` with no error, nothing degraded, and its p99 within `p99_ms`."""
    return bool(phase["rate_per_s"] == rate and phase["errors"] == phase["degraded"] == 0
                and phase["p99_ms"] is not None and phase["p99_ms"] <= p99_ms)  # fmt: skip


def _drop_keyspace(keyspace: str) -> None:
    from state.cassandra.options import CassandraSettings
    from state.cassandra.session import close, connect
    from state.exceptions import StateError

    try:
        session = connect(CassandraSettings())
    except StateError:
        return  # no node: nothing was created
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        close(session)


if __name__ == "__main__":
    main()
