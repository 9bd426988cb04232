"""The demo's live part: the service and the processor in the background, live traffic with a drift,
monitoring, its summary and the report. Each step is an ordinary `affresco` command.

The history ends `live` before the demo's start; this part simulates that last stretch (its event
times are all in the past, none ahead of the clock), paced so that the processor keeps the features
fresh, and one city drives slower from `after` on. Monitoring must then fire on the partition node
serving that city, and on no other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from affresco.commands._common import fail

if TYPE_CHECKING:
    from streams.events.platform import Alert, MonitoringMetric
    from streams.settings import KafkaSettings

__all__ = ["LivePlan", "background", "drift_city", "monitor_summary", "serving"]

console = Console()

_TEN_MIN_MS = 600_000


@dataclass(frozen=True)
class LivePlan:
    """The live stretch of simulated time and its drift."""

    start_ms: int
    end_ms: int
    city: str
    speed: float
    after_ms: int

    @property
    def drift_ms(self) -> int:
        return self.start_ms + self.after_ms

    @property
    def drift(self) -> str:
        return f"city={self.city},speed={self.speed:g},after={self.after_ms // 1000}s"


@contextmanager
def background(
    args: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`affresco <args>` in a child process (its output to `log` if given), stopped (SIGINT, then
    SIGTERM, then SIGKILL) on the way out."""
    shown = f"  > {log}" if log is not None else ""
    console.print(f"[bold cyan]$ affresco {' '.join(args)}[/]{shown}  (in the background)", highlight=False)
    out = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")
    child = subprocess.Popen([sys.executable, "-m", "affresco.cli", *args], env={**os.environ, **(env or {})},
                             stdout=out, stderr=out)  # fmt: skip
    try:
        yield child
    finally:
        for stop, wait_s in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if child.poll() is not None:
                break
            child.send_signal(stop)
            try:
                child.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        if out is not None:
            out.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(model: str = "eta", follow_ms: int = 100) -> Iterator[str]:
    """`affresco serve` in the background on a free port, ready to serve `model`; yields its URL."""
    from serving.client import PredictionClient, PredictionServiceError

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"AFFRESCO_SERVING_RELOAD_INTERVAL_S": "1", "AFFRESCO_SERVING_STORE_FOLLOW_MS": str(follow_ms)}
    with background(["serve", "--port", str(port)], env) as server, PredictionClient(url, model=model) as client:
        try:
            client.wait_ready(timeout_s=90)
        except PredictionServiceError as exc:
            code = server.poll()
            fail(f"{exc}" + (f" (`affresco serve` exited with {code})" if code is not None else ""))
        yield url


def drift_city(manifest: dict[str, Any], start_ms: int, end_ms: int) -> tuple[str, str, float]:
    """The city to drift: the busiest over [start, end) of those with a partition node of their own.

    Returns (city, its node, expected trip requests per 10 minutes); the busiest, so that its node
    has well over the alert's minimum count of trips in every 10-minute window.
    """
    from streams.sim.profiles import HOUR_MS, demand_factor, local_time
    from streams.sim.world import CITY_SPECS

    own = {tuple(n["values"]): n["id"] for n in manifest["partitions"]["nodes"] if n["serves"] == n["id"]}
    best: tuple[str, str, float] | None = None
    for spec in CITY_SPECS:
        node = own.get((spec.country, spec.id))
        if node is None:
            continue
        # Requests are a Poisson process whose rate is constant within each UTC hour.
        expected = sum(
            spec.trips_per_hour * demand_factor(local_time(h, spec.utc_offset_h))
            * (min(h + HOUR_MS, end_ms) - max(h, start_ms)) / HOUR_MS
            for h in range(start_ms // HOUR_MS * HOUR_MS, end_ms, HOUR_MS)
        )  # fmt: skip
        per_10m = expected * _TEN_MIN_MS / (end_ms - start_ms)
        if best is None or per_10m > best[2]:
            best = (spec.id, node, per_10m)
    if best is None:
        fail("no city has a partition node of its own in the model: nothing to drift")
    return best


def serving_node(manifest: dict[str, Any], country: str, city: str) -> str:
    """The node whose model serves a city's requests (its own, or the ancestor it falls back to)."""
    for node in manifest["partitions"]["nodes"]:
        if tuple(node["values"]) == (country, city):
            return str(node["serves"])
    return "global"


@dataclass
class _Row:
    windows: int = 0
    pairs: int = 0
    last_start: int = -1
    before: dict[str, list[float]] = field(default_factory=lambda: {"mae": [], "mape": []})  # 10-min windows
    after: dict[str, list[float]] = field(default_factory=lambda: {"mae": [], "mape": []})
    last: dict[str, float] = field(default_factory=dict)


def monitor_summary(
    settings: KafkaSettings, model: str, version: int, plan: LivePlan, drifted: str, echo: Callable[[str], None]
) -> dict[str, Any]:
    """Print the live stretch's 10-minute windows per partition, the alerts, and check them:
    an alert fires on `drifted` (the drifted city's node) and on no other partition."""
    from monitoring.published import read_published

    metrics, alerts = read_published(model, settings)
    metrics = [m for m in metrics if m.model_version == version and plan.start_ms <= m.window_start < plan.end_ms]
    # Every window of the live stretch, the last ones closed when the inputs ended (1 h windows end after it).
    alerts = [a for a in alerts if a.window_end is not None and a.window_end > plan.start_ms]
    rows = _by_partition(metrics, plan)
    firing: dict[str, list[Alert]] = {}
    for a in alerts:
        if a.state == "firing" and a.partition is not None:
            firing.setdefault(a.partition, []).append(a)
    table = Table(title=f"{model} v{version}: 10-minute windows of the live stretch (drift on {plan.city} from "
                  f"{_clock(plan.drift_ms)})")  # fmt: skip
    for column in ("partition", "windows", "pairs", "MAE before drift", "MAE after", "MAPE before", "MAPE after",
                   "last bias", "alerts fired"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("partition", "alerts fired") else "right")
    for partition, row in sorted(rows.items()):
        last = row.last or {}
        table.add_row(
            partition + (" ← drifted" if partition == drifted else ""), str(row.windows), f"{row.pairs:,}",
            _mean(row.before["mae"]), _mean(row.after["mae"]), _mean(row.before["mape"], ".3f"),
            _mean(row.after["mape"], ".3f"), _fmt(last.get("bias")),
            ", ".join(sorted({a.rule for a in firing.get(partition, [])})) or "-",
        )  # fmt: skip
    console.print(table)
    first = min((a for a in firing.get(drifted, [])), key=lambda a: a.window_end or 0, default=None)
    elsewhere = sorted(p for p in firing if p != drifted)
    summary: dict[str, Any] = {
        "drift": plan.drift, "drifted_partition": drifted,
        "alerts_firing": {p: sorted({a.rule for a in found}) for p, found in sorted(firing.items())},
        "first_alert": None, "drift_to_alert_s": None,
        "windows_10m": {p: {f"{metric}_{when}": _num(values[metric], 3) for metric in ("mae", "mape")
                            for when, values in (("before_drift", r.before), ("after_drift", r.after))}
                        for p, r in sorted(rows.items())},
    }  # fmt: skip
    if first is not None and first.window_end is not None:
        summary["first_alert"] = {"rule": first.rule, "window_end": _clock(first.window_end), "value": first.value}
        summary["drift_to_alert_s"] = round((first.window_end - plan.drift_ms) / 1000)
        echo(
            f"alert {first.rule} fired on {drifted}: {first.message} — its window ended "
            f"{(first.window_end - plan.drift_ms) / 60_000:.0f} min (simulated) after the drift began"
        )
    if first is None:
        fail(f"no alert fired on {drifted}, the partition of the drifted city {plan.city} ({plan.drift})")
    if elsewhere:
        fail(f"alerts fired on partitions without drift: {', '.join(elsewhere)} (only {drifted} drifted)")
    return summary


def _by_partition(metrics: list[MonitoringMetric], plan: LivePlan) -> dict[str, _Row]:
    """Per partition: its 10-minute windows' MAE before and after the drift, and its last window's metrics."""
    rows: dict[str, _Row] = {}
    for m in sorted(metrics, key=lambda m: m.window_start):
        if m.partition is None or m.window_end - m.window_start != _TEN_MIN_MS or not m.count:
            continue
        row = rows.setdefault(m.partition, _Row())
        if m.metric == "mae":
            row.windows += 1
            row.pairs += m.count
        if m.metric in row.before:
            (row.before if m.window_end <= plan.drift_ms else row.after)[m.metric].append(m.value)
        if m.metric in ("mae", "bias", "mape"):
            if m.window_start > row.last_start:
                row.last_start, row.last = m.window_start, {}
            row.last[m.metric] = m.value
    return rows


def _num(values: list[float] | None, digits: int = 1) -> float | None:
    return round(sum(values) / len(values), digits) if values else None


def _mean(values: list[float] | None, spec: str = ".0f") -> str:
    found = _num(values, 3)
    return "-" if found is None else format(found, spec)


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def _clock(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M")


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.5)


def report_path(data_dir: Path, model: str) -> Path:
    return (data_dir / "reports" / f"{model}.html").absolute()


# The monitoring step, one command: the stream processor over both topics, to their end.
def monitor_command(spec: Path) -> list[str]:
    return ["monitor", "run", "eta", "--spec", str(spec), "--until-idle"]


def live_part(
    run: Callable[[list[str]], None],
    settings: KafkaSettings,
    *,
    groups: Sequence[str],
    start_ms: int,
    end_ms: int,
    seed: int,
    city: str | None,
    speed: float,
    after_ms: int,
    rate: float,
    data_dir: Path,
    monitor_spec: Path,
    step: Callable[[str], None],
) -> dict[str, Any]:
    """Steps: live traffic with a drift (service and processor in the background), monitoring, its summary,
    the report. Returns the summary."""
    from models.bundle import load_bundle
    from models.registry import ModelRegistry

    # The drift starts on a 10-minute boundary, with one whole window before it to compare with.
    after_ms = max(after_ms, -(-start_ms // _TEN_MIN_MS) * _TEN_MIN_MS + _TEN_MIN_MS - start_ms)
    after_ms = -(-after_ms // 1000) * 1000  # whole seconds, as --drift takes it
    state = ModelRegistry(settings).state()
    alias = next((a for a in state.aliases_of("eta") if a.alias == "prod"), None)
    if alias is None:
        fail("eta@prod is not deployed: nothing to monitor")
    record = state.version("eta", alias.version)
    manifest = load_bundle(record.bundle_uri, record.sha256).manifest
    if city is None:
        city, node, per_10m = drift_city(manifest, start_ms + after_ms, end_ms)
        why = f"the busiest city with a node of its own now: ~{per_10m:.0f} requests per 10 min"
    else:
        node = serving_node(manifest, _country(city), city)
        why = "as asked"
    plan = LivePlan(start_ms, end_ms, city, speed, after_ms)

    step(f"15. Live traffic: each trip predicted before its events go out; {city} drives slower from "
         f"{_clock(plan.drift_ms)}")  # fmt: skip
    console.print(f"drift: {plan.drift} ({why}); its requests are served by {node}", highlight=False)
    started = time.monotonic()
    # The processor follows the topics so that the service reads fresh features (it follows the
    # store as a secondary, every AFFRESCO_SERVING_STORE_FOLLOW_MS).
    processor_log = data_dir.absolute() / "logs" / "demo-processor.log"
    with background(["process", "run", *groups], log=processor_log) as processor, serving() as url:
        run(["simulate", "--events", "5000000", "--seed", str(seed), "--start", str(start_ms), "--until",
             str(end_ms), "--rate", f"{rate:g}", "--drift", plan.drift, "--predict-url", url])  # fmt: skip
        if processor.poll() is not None:
            fail(f"the background processor exited with {processor.returncode} (see {processor_log})")
    live_s = time.monotonic() - started

    step("16. Monitoring: predictions joined with the trips' outcomes, metrics and alerts per partition")
    started = time.monotonic()
    run(monitor_command(monitor_spec))
    monitor_s = time.monotonic() - started

    step("17. Monitoring summary: the alert fires on the drifted city's partition, and only there")
    summary = monitor_summary(settings, "eta", alias.version, plan, node, console.print)

    step("18. The report: one self-contained HTML page")
    out = report_path(data_dir, "eta")
    out.parent.mkdir(parents=True, exist_ok=True)
    run(["report", "--model", "eta", "--out", str(out)])
    console.print(f"report: {out}", highlight=False)
    summary = {**summary, "report": str(out), "live_seconds": round(live_s, 1), "monitor_seconds": round(monitor_s, 1)}
    # For `bench/monitor.py`, whose drift-to-alert figure of the demo this is.
    summary_file = out.with_name(f"{out.stem}-monitoring-summary.json")
    summary_file.write_text(json.dumps(summary, indent=2))
    console.print(f"monitoring summary: {summary_file}", highlight=False)
    return summary


def _country(city: str) -> str:
    from streams.sim.world import CITY_SPECS

    return next(s.country for s in CITY_SPECS if s.id == city)
