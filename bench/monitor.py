"""Benchmark: monitoring — predictions joined with outcomes, their metrics, and the alert a drift fires.

Four figures (issue 12), printed as one JSON line:

1. **Joined pairs per second, in one process** (`pairs_per_s_core`; target ≥ 50k/s): the
   `monitoring.monitor.Monitor` fed `--core-pairs` synthetic pairs (3 partition nodes, 1 version,
   predictions and outcomes merged in event time over 6 h, outcomes 1-30 min after their
   prediction; spec: 2 h horizon, 1 min lateness, 10 min and 1 h windows) — the events built
   beforehand, the wall time of feeding them and `close()`, with the processor's GC thresholds.
   Beside it: `as_processor`, the very stateful step of `affresco monitor run`
   (`MonitorStep.on_batch`: batches of `--batch-size` decoded field dicts, sorted), and
   `join_only_pairs_per_s`, `monitoring.join.PairJoin` alone. A short cProfile of the processor
   step says where its time goes.
2. **The stream processor** (`pairs_per_s_stream`): `affresco monitor run --until-idle` over
   `--stream-pairs` pairs produced beforehand to fresh topics: pairs / (its wall time - the wall
   time of a run over 10 pairs, i.e. the start-up: interpreter, imports, registry read, bytewax,
   consumers and the end-of-topic detection). Both raw times are reported.
3. **Outcome → metric latency**: a following `monitor run` (subprocess, `--epoch` from
   `--epochs`) on a spec of 2 s and 10 s windows, 1 s lateness; a thread produces live predictions
   and, 300 ms later, their outcomes, event time = now, at `--rate` pairs/s for `--live-s`; a
   consumer on `<prefix>.monitoring` records when each 2 s window's model-scope `count` metric
   arrives. Per window: arrival - (window end + lateness), the time after the window could first
   close, and arrival - window end; each window's count is checked against the pairs produced in it.
4. **Drift → alert (synthetic, in-process)**: the `Monitor` with the real
   `monitoring/specs/eta.yaml` rules on a synthetic trip stream of 3 partition nodes, ~200 trips
   per node per 10 min (prediction = truth + noise: bias ≈ 0 against the -300 s threshold); from
   the drift start one node's true ETAs grow by 1/0.5 (the demo's `speed=0.5`). Reported: the
   simulated time from the drift start to the first firing alert's window end, which nodes
   alerted (only the drifted one may), and the processor's wall time. `demo_drift_to_alert_s` is the
   demo's own figure when a demo summary (a JSON file with `drift_to_alert_s`, under the data
   directory's `reports/`, or `--demo-summary`) exists, else null.

Set-up as `tests/integration/test_monitor_stream.py`: a unique topic prefix `bench.monitor.<id>`,
each model registered there with a bundle that is elsewhere (so no drift metrics of the inputs),
`AFFRESCO_DATA_DIR` a temporary directory; every topic of the prefix is deleted at the end.
Needs a running broker (`affresco infra up`). Progress goes to stderr.

    python -m bench.monitor [--core-pairs 200000] [--stream-pairs 200000] [--live-s 50] [--rate 1500]
                            [--epochs 1,5] [--profile-stream] [--skip-kafka]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench._machine import machine
from models.registry import ModelRegistry
from monitoring.join import Outcome, PairJoin, Prediction
from monitoring.monitor import Monitor
from monitoring.spec import MonitorDefinition, load_monitor_spec
from processors.runtime.monitor_flow import Inputs, MonitorInputs, MonitorStep
from streams.admin import TopicAdmin, TopicSpec
from streams.events.platform import Alert, MonitoringMetric
from streams.events.platform import Outcome as OutcomeEvent
from streams.events.platform import Prediction as PredictionEvent
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
ETA_SPEC = ROOT / "monitoring" / "specs" / "eta.yaml"
TARGET_PAIRS_PER_S = 50_000
T0 = 1_780_000_000_000 - 1_780_000_000_000 % 3_600_000  # an hour boundary
PARTITIONS = ("global/BR/sao", "global/US/nyc", "global/MX/mex")
LIVE_WINDOW_MS, LIVE_LATENESS_MS, OUTCOME_DELAY_S = 2_000, 1_000, 0.3


def log(message: str) -> None:
    print(f"[bench.monitor] {message}", file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


# -- synthetic pairs ------------------------------------------------------------------------------


def synthetic_inputs(n: int, model: str, seed: int) -> Inputs:
    """`n` predictions and their outcomes as (event time, 0 prediction / 1 outcome, fields), merged in
    event time: 3 partition nodes, version 1, over 6 h, each outcome 1-30 min after its prediction."""
    rnd = random.Random(seed)
    span = 6 * 3_600_000
    inputs: Inputs = []
    for i in range(n):
        t = T0 + i * span // n
        truth = rnd.uniform(300, 1500)
        key = f"trip-{i}"
        prediction = PredictionEvent.model_construct(
            event_time=t, request_id=f"r-{i}", model=model, model_version=1, partition=PARTITIONS[i % 3],
            prediction=truth + rnd.gauss(0, 100), join_key=key, latency_ms=rnd.uniform(0.5, 5.0),
        ).__dict__  # the decoded row's fields: the validated event's own dict  # fmt: skip
        done = t + rnd.randint(60_000, 1_800_000)
        outcome = {"event_type": "outcome", "event_time": done, "join_key": key, "label": "eta_s", "value": truth,
                   "model": None}  # fmt: skip
        inputs += [(t, 0, prediction), (done, 1, outcome)]
    inputs.sort(key=lambda e: (e[0], e[1]))
    return inputs


def write_spec(path: Path, model: str, outcomes_topic: str, **over: Any) -> Path:
    doc = {"model": model,
           "outcomes": {"topic": outcomes_topic, "event_type": "outcome", "join_key": "join_key", "label": "value"},
           "horizon": "2h", "lateness": "1m", "windows": ["10m", "1h"],
           "alerts": [{"name": "mae_high", "metric": "mae", "above": 100_000, "window": "10m", "min_count": 30,
                       "scope": "partition"}]}  # fmt: skip
    doc.update(over)
    path.write_text(yaml.safe_dump(doc))
    return path


# -- 1. the core, in-process ---------------------------------------------------------------------


def bench_core(definition: MonitorDefinition, n: int, batch_size: int, profile_pairs: int) -> dict[str, Any]:
    log(f"core: building {n:,} synthetic pairs")
    inputs = synthetic_inputs(n, definition.model, seed=1)
    events: list[tuple[int, Any]] = [(kind, f) for _, kind, f in inputs]  # fields, as the processor feeds
    joins: list[tuple[int, Any]] = [
        (kind, Prediction(f["request_id"], f["join_key"], f["event_time"], [1, f["partition"], f["prediction"]])
         if kind == 0 else Outcome(f["join_key"], f["event_time"], f["value"]))
        for _, kind, f in inputs
    ]  # fmt: skip
    result: dict[str, Any] = {"pairs": n, "inputs": len(inputs), "partitions": len(PARTITIONS), "versions": 1,
                              "windows": list(definition.spec.windows), "horizon": definition.spec.horizon,
                              "lateness": definition.spec.lateness,
                              "gc_threshold": list(gc.get_threshold())}  # fmt: skip

    # The Monitor, events built beforehand.
    gc.collect()
    monitor = Monitor(definition)
    outputs = 0
    started = time.perf_counter()
    for kind, item in events:
        outputs += len(monitor.prediction(item) if kind == 0 else monitor.outcome(item))
    outputs += len(monitor.close())
    seconds = time.perf_counter() - started
    counts = monitor.counts()
    result["monitor"] = {"seconds": round(seconds, 3), "pairs_per_s": round(n / seconds),
                         "us_per_pair": round(seconds / n * 1e6, 2), "outputs": outputs,
                         "paired": counts["predictions"].get("paired", 0)}  # fmt: skip
    log(f"core: Monitor {n / seconds:,.0f} pairs/s")
    del monitor

    # The processor's stateful step, as `monitor run` calls it: decoded field dicts in batches.
    def as_processor(items: Inputs) -> tuple[float, int, int]:
        logic = MonitorStep(Monitor(definition), None, close_at_end=True)
        out = 0
        began = time.perf_counter()
        for i in range(0, len(items), batch_size):
            published, _ = logic.on_batch([MonitorInputs(time.monotonic(), items[i : i + batch_size])])
            out += sum(len(p.outputs) for p in published)
        out += sum(len(p.outputs) for p in logic.on_eof()[0])
        return time.perf_counter() - began, out, logic.monitor.counts()["predictions"].get("paired", 0)

    gc.collect()
    seconds, out, paired = as_processor(inputs)
    result["as_processor"] = {"seconds": round(seconds, 3), "pairs_per_s": round(n / seconds),
                              "us_per_pair": round(seconds / n * 1e6, 2), "batch_size": batch_size, "outputs": out,
                              "paired": paired}  # fmt: skip
    log(f"core: the processor's step {n / seconds:,.0f} pairs/s")

    # The join alone.
    gc.collect()
    join = PairJoin(definition.horizon_ms, definition.lateness_ms)
    pairs = 0
    started = time.perf_counter()
    for kind, item in joins:
        pairs += len(join.add_prediction(item) if kind == 0 else join.add_outcome(item))
    join.close()
    seconds = time.perf_counter() - started
    result["join_only"] = {"seconds": round(seconds, 3), "pairs_per_s": round(n / seconds),
                           "us_per_pair": round(seconds / n * 1e6, 2), "paired": pairs}  # fmt: skip
    log(f"core: PairJoin alone {n / seconds:,.0f} pairs/s")

    # Where the processor's step spends its time (cProfile slows it ~2x; shares are what matter).
    if profile_pairs:
        k = min(profile_pairs, n)
        subset = synthetic_inputs(k, definition.model, seed=2)
        profiler = cProfile.Profile()
        profiler.enable()
        as_processor(subset)
        profiler.disable()
        result["profile"] = {
            "pairs": k,
            "path": "as_processor",
            "top_tottime": top_functions(pstats.Stats(profiler, stream=io.StringIO()), 12),
        }
    return result


# -- Kafka set-up ---------------------------------------------------------------------------------


class Deployment:
    """A fresh topic prefix with its registry, a temporary data directory, the CLI's environment."""

    def __init__(self, base: KafkaSettings) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.prefix = f"bench.monitor.{self.tag}"
        self.settings = base.model_copy(update={"topic_prefix": self.prefix})
        self.topics = Topics(self.settings)
        self.work = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
        self.admin = TopicAdmin(self.settings)
        self.registry = ModelRegistry(self.settings)

    def model(self, name: str, outcome_partitions: int = 3) -> tuple[str, str]:
        """Register `name` (v1, regression, its bundle elsewhere) and make its two topics."""
        outcomes = f"{self.prefix}.outcomes.{name}"
        self.admin.ensure([self.topics.predictions_spec(name),
                           TopicSpec(outcomes, partitions=outcome_partitions, retention_ms=-1)])  # fmt: skip
        self.registry.register(name, 1, f"file:///nowhere/{name}/v1", {"manifest.json": "0" * 64}, {"mae": 1.0},
                               "regression")  # fmt: skip
        return self.topics.predictions(name), outcomes

    def env(self, data: str) -> dict[str, str]:
        return {**os.environ, "AFFRESCO_DATA_DIR": str(self.work / data), "AFFRESCO_KAFKA_TOPIC_PREFIX": self.prefix,
                "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers}  # fmt: skip

    def cleanup(self) -> None:
        try:
            owned = [t for t in self.admin.names() if t.startswith(self.prefix + ".")]
            if owned:
                self.admin.delete(owned)
        except KafkaException:
            pass
        shutil.rmtree(self.work, ignore_errors=True)


def monitor_cli(model: str, spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "affresco.cli", "monitor", "run", model, "--spec", str(spec), *extra]


def produce_inputs(settings: KafkaSettings, predictions: str, outcomes: str, inputs: list[Any]) -> float:
    started = time.perf_counter()
    with EventProducer(settings) as producer:
        for n, (_, kind, fields) in enumerate(inputs, 1):
            if kind == 0:
                producer.send(predictions, PredictionEvent.model_construct(**fields))
            else:
                producer.send(outcomes, OutcomeEvent.model_construct(**fields))
            if n % 10_000 == 0:
                producer.poll(0)
        producer.flush(120)
    return time.perf_counter() - started


def run_until_idle(cmd: list[str], env: dict[str, str], what: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode:
        msg = f"{what}: `monitor run` exited with {done.returncode}:\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary, wall


# -- 2. the stream processor ---------------------------------------------------------------------


def bench_stream(dep: Deployment, n: int, batch_size: int, profile: bool) -> dict[str, Any]:
    idle_preds, idle_outs = dep.model("bm_idle")
    preds, outs = dep.model("bm_stream")
    idle_spec = write_spec(dep.work / "bm_idle.yaml", "bm_idle", idle_outs)
    spec = write_spec(dep.work / "bm_stream.yaml", "bm_stream", outs)
    produce_inputs(dep.settings, idle_preds, idle_outs, synthetic_inputs(10, "bm_idle", seed=3))
    log(f"stream: producing {n:,} pairs")
    inputs = synthetic_inputs(n, "bm_stream", seed=4)
    produce_s = produce_inputs(dep.settings, preds, outs, inputs)
    del inputs
    extra = ["--until-idle", "--batch-size", str(batch_size)]
    log("stream: start-up run (10 pairs)")
    idle, idle_wall = run_until_idle(monitor_cli("bm_idle", idle_spec, *extra), dep.env("idle"), "start-up run")
    log(f"stream: start-up {idle_wall:.1f} s; the run over {n:,} pairs")
    summary, wall = run_until_idle(monitor_cli("bm_stream", spec, *extra), dep.env("stream"), "stream run")
    paired = summary["predictions"].get("paired", 0)
    net = wall - idle_wall
    result: dict[str, Any] = {
        "pairs": n, "paired": paired, "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "produce_s": round(produce_s, 1), "batch_size": batch_size,
        "epoch_s": 5.0, "wall_s": round(wall, 2), "startup_wall_s": round(idle_wall, 2),
        "cli_seconds": summary.get("seconds"), "startup_cli_seconds": idle.get("seconds"),
        "pairs_per_s": round(n / net) if net > 0 else None, "pairs_per_s_raw_wall": round(n / wall),
        "published": summary.get("published"), "dead_lettered": summary.get("dead_lettered"),
    }  # fmt: skip
    log(f"stream: {wall:.1f} s wall, {result['pairs_per_s']:,} pairs/s net of start-up")
    if profile:
        log("stream: the same run again under cProfile")
        out = dep.work / "stream.prof"
        cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "affresco.cli",
               *monitor_cli("bm_stream", spec, *extra)[3:]]  # fmt: skip
        _, profiled_wall = run_until_idle(cmd, dep.env("stream-profiled"), "profiled stream run")
        stats = pstats.Stats(str(out), stream=io.StringIO())
        result["profile"] = {"wall_s": round(profiled_wall, 1), "top_tottime": top_functions(stats, 15)}
    return result


def top_functions(stats: pstats.Stats, n: int) -> list[dict[str, Any]]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    out = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in rows:
        where = file.replace(str(ROOT) + "/", "").split("site-packages/", 1)[-1]
        out.append({"function": f"{where}:{line}({name})", "calls": calls, "tottime_s": round(tottime, 3),
                    "tottime_share": round(tottime / total, 3), "cumtime_s": round(cumtime, 3)})  # fmt: skip
    return out


# -- 3. outcome → metric latency -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MonitoringReader(threading.Thread):
    """Records the wall time each window's model-scope `count` metric of `model` first arrives."""

    def __init__(self, settings: KafkaSettings, topic: str, model: str) -> None:
        super().__init__(daemon=True)
        self.model = model
        self.consumer = Consumer({**settings.client_config(), "group.id": f"bench-monitor-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 5,
                                  "fetch.error.backoff.ms": 5})  # fmt: skip
        self.consumer.assign([TopicPartition(topic, 0, -1)])  # from the end: only what this run publishes
        self.arrivals: dict[tuple[int, int], tuple[float, int]] = {}  # (start, length) -> (arrival ms, count)
        self.alerts = 0
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msgs = self.consumer.consume(1000, 0.05)
            self.ready.set()
            now_ms = time.time() * 1000
            for m in msgs:
                if m.error() is not None:
                    continue
                data = json.loads(m.value() or b"{}")
                if data.get("model") != self.model:
                    continue
                if data.get("event_type") == "alert":
                    self.alerts += 1
                    continue
                event = MonitoringMetric.model_validate(data)
                if event.metric == "count" and event.model_version is None and event.partition is None:
                    key = (event.window_start, event.window_end - event.window_start)
                    self.arrivals.setdefault(key, (now_ms, event.count))
        self.consumer.close()


def produce_live(
    settings: KafkaSettings, preds: str, outs: str, model: str, rate: float, seconds: float
) -> dict[str, Any]:
    """Predictions at `rate`/s with event time = now, each one's outcome `OUTCOME_DELAY_S` later (its event
    time = when it is produced). Returns the pairs produced per 2 s window of outcome time."""
    produced: Counter[int] = Counter()
    waiting: list[tuple[float, str]] = []  # (due, trip)
    sent = 0
    producer = EventProducer(settings)
    started, started_ms = time.monotonic(), int(time.time() * 1000)
    last_ms = 0
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        now_ms = int(time.time() * 1000)
        due = int(elapsed * rate)
        while sent < due:
            trip = f"trip-{sent}"
            prediction = PredictionEvent.model_construct(
                event_time=now_ms, request_id=f"r-{sent}", model=model, model_version=1,
                partition=PARTITIONS[sent % 3], prediction=600.0 + sent % 7, join_key=trip, latency_ms=1.0,
            )  # fmt: skip
            producer.send(preds, prediction)
            waiting.append((time.monotonic() + OUTCOME_DELAY_S, trip))
            sent += 1
        now = time.monotonic()
        k = 0
        while k < len(waiting) and waiting[k][0] <= now:
            k += 1
        if k:
            now_ms = int(time.time() * 1000)
            for _, trip in waiting[:k]:
                producer.send(outs, OutcomeEvent.model_construct(event_time=now_ms, join_key=trip, label="eta",
                                                                 value=610.0, model=None))  # fmt: skip
                produced[now_ms - now_ms % LIVE_WINDOW_MS] += 1
            last_ms = now_ms
            del waiting[:k]
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(30)
    return {"per_window": produced, "predictions": sent, "outcomes": sum(produced.values()), "last_ms": last_ms,
            "started_ms": started_ms}  # fmt: skip


def bench_latency(dep: Deployment, epoch: float, rate: float, seconds: float, warmup_s: float) -> dict[str, Any]:
    model = f"bm_live_e{str(epoch).replace('.', '_')}"
    preds, outs = dep.model(model)
    spec = write_spec(dep.work / f"{model}.yaml", model, outs, horizon="30s", lateness="1s", windows=["2s", "10s"],
                      alerts=[])  # fmt: skip
    dep.admin.ensure([dep.topics.monitoring_spec()])
    reader = MonitoringReader(dep.settings, dep.topics.monitoring, model)
    reader.start()
    reader.ready.wait(30)
    port = _free_port()
    cmd = monitor_cli(model, spec, "--epoch", str(epoch), "--metrics-port", str(port))
    proc = subprocess.Popen(cmd, env=dep.env(model), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:  # its metrics endpoint answers: the flow is being built
            if proc.poll() is not None:
                err = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                msg = f"the following monitor exited with {proc.returncode}:\n{err}"
                raise RuntimeError(msg)
            try:
                httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        log(f"latency (epoch {epoch:g} s): producing {rate:g} pairs/s for {seconds:g} s")
        live = produce_live(dep.settings, preds, outs, model, rate, seconds)
        time.sleep(3)  # the last closable windows' metrics arrive
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.stop.set()
        reader.join(10)

    # Windows measured: past the warm-up, and closable — an event at or past end + lateness was produced.
    first = live["started_ms"] + warmup_s * 1000
    closable = [s for s in live["per_window"] if s >= first and s + LIVE_WINDOW_MS + LIVE_LATENESS_MS < live["last_ms"]]
    after_close, after_end, mismatches, missing = [], [], [], 0
    for start in sorted(closable):
        found = reader.arrivals.get((start, LIVE_WINDOW_MS))
        if found is None:
            missing += 1
            continue
        arrival_ms, count = found
        end = start + LIVE_WINDOW_MS
        after_close.append(arrival_ms - (end + LIVE_LATENESS_MS))
        after_end.append(arrival_ms - end)
        if count != live["per_window"][start]:
            mismatches.append({"window_start": start, "published": count, "produced": live["per_window"][start]})
    return {
        "epoch_s": epoch, "load_avg_1m_at_end": round(os.getloadavg()[0], 2), "rate_pairs_per_s": rate,
        "seconds": seconds, "warmup_s": warmup_s,
        "window_ms": LIVE_WINDOW_MS, "lateness_ms": LIVE_LATENESS_MS, "outcome_delay_ms": int(OUTCOME_DELAY_S * 1000),
        "pairs_produced": live["outcomes"], "windows": len(after_close), "windows_missing": missing,
        "count_mismatches": len(mismatches), "mismatched": mismatches[:5],
        "after_close_ms": {"p50": _pct(after_close, 50), "p99": _pct(after_close, 99),
                           "max": round(max(after_close), 1) if after_close else None},
        "after_window_end_ms": {"p50": _pct(after_end, 50), "p99": _pct(after_end, 99),
                                "max": round(max(after_end), 1) if after_end else None},
    }  # fmt: skip


# -- 4. drift → alert (synthetic) -----------------------------------------------------------------


def bench_drift(per_10m: int, hours: float, drift_after_min: float, speed: float, seed: int) -> dict[str, Any]:
    definition = load_monitor_spec(ETA_SPEC, {"eta": "regression"})
    rnd = random.Random(seed)
    start, end = T0, T0 + int(hours * 3_600_000)
    drift_ms = start + int(drift_after_min * 60_000)
    drifted = PARTITIONS[0]
    inputs: list[tuple[int, int, Any]] = []
    trips = 0
    for partition in PARTITIONS:
        city = partition.rsplit("/", 1)[-1]
        country = partition.split("/")[1]
        n = int(per_10m * (end - start) / 600_000)
        for _ in range(n):
            t = rnd.randrange(start, end)
            base = rnd.lognormvariate(6.7, 0.35)  # ~ 800 s median
            truth = base / speed if partition == drifted and t >= drift_ms else base
            trip = f"{city}-{trips}"
            trips += 1
            inputs.append((t, 0, PredictionEvent.model_construct(
                event_time=t, request_id=f"r-{trip}", model="eta", model_version=1, partition=partition,
                prediction=max(60.0, base + rnd.gauss(0, 125)), join_key=trip, latency_ms=1.0)))  # fmt: skip
            done = t + int(truth * 1000)
            inputs.append((done, 1, {"event_time": done, "trip_id": trip, "eta_s": truth, "requested_at": t,
                                     "city": city, "country": country}))  # fmt: skip
    inputs.sort(key=lambda e: (e[0], e[1]))
    monitor = Monitor(definition)
    fired: list[tuple[Alert, int]] = []  # (the alert, the event time of the input that made it)
    mae: dict[str, dict[str, list[float]]] = {p: {"before": [], "after": []} for p in PARTITIONS}
    started = time.perf_counter()
    for t, kind, item in inputs:
        outputs = monitor.prediction(item) if kind == 0 else monitor.outcome(item)
        for o in outputs:
            if isinstance(o, Alert) and o.state == "firing":
                fired.append((o, t))
            elif (isinstance(o, MonitoringMetric) and o.metric == "mae" and o.partition is not None
                  and o.window_end - o.window_start == 600_000):  # fmt: skip
                mae[o.partition]["before" if o.window_end <= drift_ms else "after"].append(o.value)
    for o in monitor.close():
        if isinstance(o, Alert) and o.state == "firing":
            fired.append((o, end))
    wall = time.perf_counter() - started
    on_drifted = [(a, t) for a, t in fired if a.partition == drifted]
    first = min(on_drifted, key=lambda at: at[0].window_end or 0, default=None)
    pairs = monitor.counts()["predictions"].get("paired", 0)
    return {
        "synthetic": True,
        "spec": str(ETA_SPEC.relative_to(ROOT)),
        "rules": [r.name for r in definition.spec.alerts],
        "partitions": list(PARTITIONS), "drifted_partition": drifted,
        "trips_per_partition_per_10m": per_10m, "simulated_hours": hours,
        "drift": f"{drifted}: true ETA x 1/{speed:g} for trips requested from {drift_after_min:g} min on",
        "pairs": pairs,
        "drift_to_alert_sim_s": None if first is None else round(((first[0].window_end or 0) - drift_ms) / 1000),
        "drift_to_alert_emitted_sim_s": None if first is None else round((first[1] - drift_ms) / 1000),
        "first_alert": None if first is None else {"rule": first[0].rule, "value": round(first[0].value or 0, 1),
                                                   "window_min": _window_minutes(first[0])},
        "alerts_fired": sorted({f"{a.rule}@{a.partition}" for a, _ in fired}),
        "only_drifted_alerted": bool(fired) and all(a.partition == drifted for a, _ in fired),
        "mae_10m": {p: {k: round(sum(v) / len(v), 1) if v else None for k, v in m.items()} for p, m in mae.items()},
        "processor_wall_s": round(wall, 3),
        "processor_pairs_per_s": round(pairs / wall) if wall else None,
    }  # fmt: skip


def _window_minutes(alert: Alert) -> float | None:
    if alert.window_start is None or alert.window_end is None:
        return None
    return (alert.window_end - alert.window_start) / 60_000


def demo_figure(explicit: Path | None) -> tuple[float | None, str | None]:
    """`drift_to_alert_s` from the demo's summary file, if one exists."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(explicit)
    for data in {Path(os.environ.get("AFFRESCO_DATA_DIR", ROOT / ".affresco")), ROOT / ".affresco"}:
        candidates += sorted((data / "reports").glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(found, dict) and found.get("drift_to_alert_s") is not None:
            return float(found["drift_to_alert_s"]), str(path)
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--core-pairs", type=int, default=200_000, help="pairs fed to the in-process Monitor")
    parser.add_argument("--profile-pairs", type=int, default=30_000, help="pairs of the core cProfile (0: none)")
    parser.add_argument("--stream-pairs", type=int, default=200_000, help="pairs for `monitor run --until-idle`")
    parser.add_argument("--batch-size", type=int, default=5000, help="`monitor run --batch-size` (and the core's)")
    parser.add_argument("--profile-stream", action="store_true", help="also run the stream once under cProfile")
    parser.add_argument("--live-s", type=float, default=50.0, help="seconds of live traffic per latency run")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="first seconds of live traffic not measured")
    parser.add_argument("--rate", type=float, default=1500.0, help="live pairs per second")
    parser.add_argument("--epochs", default="1,5", help="comma-separated `monitor run --epoch` values for the latency")
    parser.add_argument("--drift-trips-per-10m", type=int, default=200, help="trips per partition node per 10 min")
    parser.add_argument("--demo-summary", type=Path, default=None, help="a demo summary JSON (drift_to_alert_s)")
    parser.add_argument("--skip-kafka", action="store_true", help="only the in-process figures (1 and 4)")
    args = parser.parse_args()
    began = time.perf_counter()
    load = os.getloadavg()[0]
    gc.set_threshold(50_000, 20, 1000)  # as `monitor run` does (run_monitor): long-lived state, rare full collections

    with tempfile.TemporaryDirectory() as tmp:
        core_spec = write_spec(Path(tmp) / "core.yaml", "bm_core", "bench.monitor.core.outcomes")
        core = bench_core(load_monitor_spec(core_spec, {"bm_core": "regression"}), args.core_pairs, args.batch_size,
                          args.profile_pairs)  # fmt: skip
    log("drift: synthetic trips through the Monitor with monitoring/specs/eta.yaml")
    drift = bench_drift(args.drift_trips_per_10m, hours=3.0, drift_after_min=60.0, speed=0.5, seed=7)
    log(f"drift: alert {drift['drift_to_alert_sim_s']} s (simulated) after the drift, on {drift['alerts_fired']}")

    stream: dict[str, Any] | None = None
    latency: list[dict[str, Any]] = []
    if not args.skip_kafka:
        settings = KafkaSettings()
        TopicAdmin(settings).ping()
        dep = Deployment(settings)
        try:
            stream = bench_stream(dep, args.stream_pairs, args.batch_size, args.profile_stream)
            for epoch in [float(e) for e in args.epochs.split(",") if e.strip()]:
                latency.append(bench_latency(dep, epoch, args.rate, args.live_s, args.warmup_s))
                log(f"latency (epoch {epoch:g} s): {latency[-1]['after_close_ms']}")
        finally:
            dep.cleanup()

    demo_s, demo_file = demo_figure(args.demo_summary)
    first_latency = latency[0] if latency else None
    result = {
        "bench": "monitor",
        "pairs_per_s_core": core["monitor"]["pairs_per_s"],
        "pairs_per_s_core_as_processor": core["as_processor"]["pairs_per_s"],
        "join_only_pairs_per_s": core["join_only"]["pairs_per_s"],
        "pairs_per_s_stream": stream["pairs_per_s"] if stream else None,
        "outcome_to_metric_p99_ms": first_latency["after_close_ms"]["p99"] if first_latency else None,
        "drift_to_alert_sim_s": drift["drift_to_alert_sim_s"],
        "demo_drift_to_alert_s": demo_s,
        "demo_summary_file": demo_file,
        "targets": {"pairs_per_s": TARGET_PAIRS_PER_S},
        "target_met": {
            "core": core["monitor"]["pairs_per_s"] >= TARGET_PAIRS_PER_S,
            "core_as_processor": core["as_processor"]["pairs_per_s"] >= TARGET_PAIRS_PER_S,
            "stream": None if not stream or stream["pairs_per_s"] is None
            else stream["pairs_per_s"] >= TARGET_PAIRS_PER_S,
        },
        "core": core,
        "stream": stream,
        "latency": latency,
        "drift": drift,
        "notes": (
            "latency after_close_ms = metric arrival on affresco.monitoring - (window end + lateness): a window "
            "closes when the join's watermark (max event time seen - lateness) reaches its end, so it needs an "
            "event at or past end + lateness; it includes the producer's linger (5 ms), the source's poll and "
            "cross-topic alignment, the Monitor, the sink's produce (write_batch polls, librdkafka sends after "
            "its linger; the epoch's flush only bounds it) and this reader's fetch. after_window_end_ms adds the "
            "lateness itself. The epoch does not gate publication (compare latency[*].epoch_s); each epoch "
            "pickles the Monitor's state, a pause the tail may show. The stream's pairs/s is net of a 10-pair "
            "run's wall time (start-up and the end-of-topic detection). The drift figure is synthetic "
            "(in-process Monitor, demo-like density), not the demo's."
        ),
        "wall_s": round(time.perf_counter() - began, 1),
        "load_avg_1m_at_start": round(load, 2),
        "machine": machine(),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
