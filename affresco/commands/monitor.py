"""`affresco monitor`: a model's predictions joined with their outcomes — metrics and alerts."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings
from streams.exceptions import StreamsError

__all__ = ["app"]

app = typer.Typer(help="Monitor models: predictions joined with outcomes, metrics per partition, alerts.",
                  no_args_is_help=True)  # fmt: skip


@app.command("run")
def run_(
    model: str = typer.Argument(..., help="The model to monitor, e.g. eta."),
    spec: Path | None = typer.Option(
        None, "--spec", "-s", help="The monitoring spec (YAML); default: monitoring/specs/<model>.yaml."
    ),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Stop at the end of both topics, closing every window."
    ),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Kafka records per poll."),
    epoch_s: float = typer.Option(5.0, "--epoch", min=0.1, help="Seconds between state snapshots."),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=1,
        max=65535,
        envvar="AFFRESCO_MONITOR_METRICS_PORT",
        help="Serve the join counts, the latest metrics and the alerts as Prometheus metrics at "
        "http://127.0.0.1:PORT/metrics.",
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """The monitoring stream processor (bytewax): follow the model's predictions and the outcomes,
    publish each closed window's metrics and the alerts they fire or resolve to affresco.monitoring.

    Crash-safe as the feature processor: offsets and state are snapshotted together every epoch;
    after a kill it resumes from the last snapshot and counts no pair twice. Invalid predictions or
    outcomes go to the dead-letter topics with the reason."""
    from affresco.settings import PlatformSettings
    from processors.runtime.monitor_flow import MonitorOptions, run_monitor

    kafka = kafka_settings(bootstrap_servers)
    started = time.monotonic()
    definition, state = _definition(spec or _default_spec(model), kafka)
    if definition.model != model:
        msg = f"the spec {definition.file} monitors {definition.model!r}, not {model!r}"
        raise typer.BadParameter(msg, param_hint="--spec")
    options = MonitorOptions(until_idle=until_idle, batch_size=batch_size, epoch_s=epoch_s,
                             recovery_dir=PlatformSettings().recovery_dir(f"monitor-{model}"),
                             metrics_port=metrics_port)  # fmt: skip
    err_console.print(f"monitoring {model} ({'until idle' if until_idle else 'following'})", highlight=False)
    try:
        counters = run_monitor(definition, _manifests(state, model), kafka, options)
    except StreamsError as exc:
        fail(str(exc))
    typer.echo(json.dumps({"model": model, **counters.summary(), "seconds": round(time.monotonic() - started, 2)}))


def _default_spec(model: str) -> Path:
    import monitoring

    path = Path(monitoring.__file__).parent / "specs" / f"{model}.yaml"
    if not path.exists():
        msg = f"no monitoring spec for {model} at {path}: give one with --spec"
        raise typer.BadParameter(msg, param_hint="--spec")
    return path


def _definition(spec: Path, kafka: Any) -> tuple[Any, Any]:
    """The checked spec (its model must be registered) and the registry's state."""
    from models.registry import ModelRegistry
    from monitoring.spec import MonitorSpecError, load_monitor_spec

    try:
        state = ModelRegistry(kafka).state()
        tasks = {r.model: r.task for r in state.versions.values() if r.task is not None}
        return load_monitor_spec(spec, tasks), state
    except (MonitorSpecError, StreamsError) as exc:
        fail(str(exc))


@app.command("replay")
def replay_(
    spec: Path = typer.Option(..., "--spec", "-s", help="The monitoring spec (YAML), e.g. monitoring/specs/eta.yaml."),
    publish: bool = typer.Option(False, "--publish", help="Write the metric and alert events to affresco.monitoring."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Replay the model's predictions topic and the outcomes topic from their start, through the monitor:
    the windows' metrics per version and partition, the alerts they fire, and where every event went."""
    from monitoring.monitor import Monitor

    kafka = kafka_settings(bootstrap_servers)
    started = time.monotonic()
    definition, state = _definition(spec, kafka)
    try:
        monitor = Monitor(definition, _manifests(state, definition.model))
        events, invalid = _read(definition.model, definition.spec.outcomes.topic,
                                definition.spec.outcomes.event_type, kafka)  # fmt: skip
        outputs = []
        for _, kind, item in events:
            outputs += monitor.prediction(item) if kind == 0 else monitor.outcome(item)
        outputs += monitor.close()
        if publish:
            _publish(outputs, kafka)
    except StreamsError as exc:
        fail(str(exc))
    alerts = [o for o in outputs if o.event_type == "alert"]
    metrics = [o for o in outputs if o.event_type == "monitoring_metric"]
    for alert in alerts:
        err_console.print(f"[{'red' if alert.state == 'firing' else 'green'}]{alert.state}[/] {alert.rule}: "
                          f"{alert.message}", highlight=False)  # fmt: skip
    summary: dict[str, Any] = {
        "model": definition.model, **monitor.counts(), "invalid": invalid,
        "metric_events": len(metrics), "alerts": [a.model_dump(mode="json") for a in alerts],
        "by_partition": _last_by_partition(metrics), "published": publish,
        "seconds": round(time.monotonic() - started, 2),
    }  # fmt: skip
    typer.echo(json.dumps(summary))


def _manifests(state: Any, model: str) -> Any:
    """Each version's bundle manifest (its training distributions, for drift), loaded once, checked."""
    from models.bundle import load_bundle
    from models.exceptions import ModelsError

    loaded: dict[int, Any] = {}

    def manifest_of(version: int) -> Any:
        if version not in loaded:
            try:
                record = state.version(model, version)
                loaded[version] = load_bundle(record.bundle_uri, record.sha256).manifest
            except ModelsError as exc:
                err_console.print(f"{model} v{version}: no drift metrics ({exc})", highlight=False)
                loaded[version] = None
        return loaded[version]

    return manifest_of


def _read(model: str, outcome_topic: str, outcome_type: str, kafka: Any) -> tuple[list[tuple[int, int, Any]], Any]:
    """Both inputs, merged in event time (predictions first on ties); invalid records counted."""
    from backfill.training import labels_from_topic
    from streams.admin import TopicAdmin
    from streams.events.platform import Prediction
    from streams.replay import ReplayRange, replay
    from streams.topics import Topics

    topic = Topics(kafka).predictions(model)
    if topic not in TopicAdmin(kafka).names():
        msg = f"no predictions topic {topic}: nothing of {model} was served or predicted yet"
        raise typer.BadParameter(msg, param_hint="--spec")
    merged: list[tuple[int, int, Any]] = []
    invalid: Counter[str] = Counter()
    for batch in replay(topic, ReplayRange(), kafka):
        for m in batch:
            try:
                event = Prediction.model_validate_json(m.value() or b"")
            except ValueError:
                invalid["predictions"] += 1
                continue
            merged.append((event.event_time, 0, event))
    outcomes, bad = labels_from_topic(outcome_topic, outcome_type, kafka)
    invalid["outcomes"] += bad
    merged += [(row["event_time"], 1, row) for row in outcomes]
    merged.sort(key=lambda e: (e[0], e[1]))
    return merged, dict(invalid)


def _publish(outputs: list[Any], kafka: Any) -> None:
    from streams.admin import TopicAdmin
    from streams.producer import EventProducer
    from streams.topics import Topics

    topics = Topics(kafka)
    TopicAdmin(kafka).ensure([topics.monitoring_spec()])
    with EventProducer(kafka) as producer:
        producer.send_many(topics.monitoring, outputs)


def _last_by_partition(metrics: list[Any]) -> dict[str, dict[str, float]]:
    """Per partition node: the last window's metrics (of the finest window length)."""
    partition = [m for m in metrics if m.partition is not None]
    if not partition:
        return {}
    finest = min(m.window_end - m.window_start for m in partition)
    out: dict[str, dict[str, float]] = {}
    for m in sorted(partition, key=lambda m: m.window_end):
        if m.window_end - m.window_start == finest:
            out.setdefault(f"v{m.model_version} {m.partition}", {})[m.metric] = round(m.value, 4)
    return out
