"""`affresco explain <prediction_id>`: a prediction re-derived from the raw event log, beside what was served."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings

if TYPE_CHECKING:
    from processors.engine import SourceRow
    from serving.model import GroupUse
    from streams.events.platform import Prediction
    from streams.settings import KafkaSettings

__all__ = ["explain"]

_SHOWN_EVENTS = 5


def explain(
    prediction_id: str = typer.Argument(..., help="The prediction's id (request_id of its Prediction event)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Look only on this model's predictions topic."),
    source: str = typer.Option("kafka", "--source", help="Where the raw events come from: kafka or archive."),
    definitions: Path | None = typer.Option(
        None, "--definitions", "-d", help="Feature groups from YAML, not the registry."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Replay a prediction from the raw events alone: its features as of 1 ms before its time, re-scored by the same
    bundle version, beside what was served, with the events behind each windowed feature. Exit 1 on any difference."""
    from affresco.commands.predict import load_model
    from affresco.settings import PlatformSettings
    from backfill.training import read_group_events
    from models.exceptions import ModelsError
    from processors.exceptions import ProcessorsError
    from processors.prediction import features_instant
    from serving.core import predict_replayed
    from state.exceptions import StateError
    from streams.exceptions import StreamsError

    if source not in ("kafka", "archive"):
        msg = f"expected kafka or archive, got {source!r}"
        raise typer.BadParameter(msg, param_hint="--source")
    settings, kafka = PlatformSettings(), kafka_settings(bootstrap_servers)
    try:
        event = _find(prediction_id, model, kafka)
        if event is None:
            where = f"the {model} predictions topic" if model else "any predictions topic"
            fail(f"no prediction {prediction_id!r} on {where}")
        loaded = load_model(f"{event.model}:{event.model_version}", kafka, definitions)
        row: dict[str, Any] = {**event.entity_keys, **event.inputs, "event_time": event.event_time}
        events = read_group_events([u.group for u in loaded.groups], source, event.event_time, kafka, settings.offline)
        [replayed] = predict_replayed(loaded, [row], events, now_ms=int(time.time() * 1000))
    except (ModelsError, ProcessorsError, StreamsError, StateError) as exc:
        fail(str(exc))
    instant = features_instant(event.event_time)
    features = []
    for use in loaded.groups:
        entity = row.get(use.entity_column)
        contributing = _contributing(
            use, events.get(use.group.ref, ()), None if entity is None else str(entity), instant
        )
        for name in use.features:
            column = f"{use.group.name}__{name}"
            served, again = event.features.get(column), replayed.features.get(column)
            # Event times are shown, not compared: a record already holding later events (the
            # request's own, processed first) carries a later time, and the same as-of values.
            times = {"served": event.feature_times.get(column), "replayed": replayed.feature_times.get(column)}
            features.append({"feature": column, "served": served, "replayed": again, "equal": served == again,
                             "event_time": times, "events": contributing.get(name)})  # fmt: skip
    same = all(f["equal"] for f in features) and event.prediction == replayed.prediction
    out = {
        "prediction_id": prediction_id, "model": event.model, "version": event.model_version,
        "request_time_ms": event.event_time, "features_as_of_ms": instant,
        "served": {"prediction": event.prediction, "partition": event.partition},
        "replayed": {"prediction": replayed.prediction, "partition": replayed.served_by},
        "identical": same, "features": features,
    }  # fmt: skip
    _print(out)
    typer.echo(json.dumps(out, default=str))
    if not same:
        raise typer.Exit(1)


def _find(prediction_id: str, model: str | None, settings: KafkaSettings) -> Prediction | None:
    """The prediction event with this id, from one model's predictions topic or all of them."""
    from streams.admin import TopicAdmin
    from streams.events.platform import Prediction
    from streams.replay import ReplayRange, replay
    from streams.topics import Topics

    topics = Topics(settings)
    names = TopicAdmin(settings).names()
    wanted = [topics.predictions(model)] if model else sorted(n for n in names if n.startswith(topics.predictions("")))
    needle = prediction_id.encode()
    for topic in wanted:
        if topic not in names:
            continue
        for batch in replay(topic, ReplayRange(), settings):
            for m in batch:
                if m.key() == needle and m.value():
                    return Prediction.model_validate_json(m.value() or b"")
    return None


def _contributing(use: GroupUse, rows: Any, entity: str | None, instant: int) -> dict[str, dict[str, Any]]:
    """Per windowed feature: the entity's accepted events in its window as of `instant` (count, first few)."""
    from processors.kernels.tiles import window_start

    if entity is None:
        return {}
    judged = use.engine.evaluate(rows)
    times = use.engine.times(judged.batch)
    batch = judged.batch
    mine: list[tuple[int, SourceRow]] = [
        (int(t), r) for t, r, e in zip(times, batch.rows, batch.entities, strict=True) if e == entity and t <= instant
    ]
    out: dict[str, dict[str, Any]] = {}
    features = {f.name: f for f in use.group.features}
    for name in use.features:
        window = features[name].window
        if window is None:
            continue
        start = int(window_start(window, instant))
        inside = sorted((t, r.partition, r.offset) for t, r in mine if t >= start)
        first = [{"event_time": t, "partition": p, "offset": o} for t, p, o in inside[:_SHOWN_EVENTS]]
        out[name] = {"window": [start, instant], "count": len(inside), "first": first}
    return out


def _print(out: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"prediction {out['prediction_id']}: {out['model']} v{out['version']}, "
                        f"features as of {out['features_as_of_ms']}", title_justify="left")  # fmt: skip
    for column in ("feature", "served", "replayed", "events in window"):
        table.add_column(column, overflow="fold")
    for f in out["features"]:
        events = f["events"]["count"] if f["events"] else ""
        mark = "" if f["equal"] else "[bold red] ≠[/]"
        table.add_row(f["feature"], repr(f["served"]), repr(f["replayed"]) + mark, str(events))
    table.add_row("prediction", repr(out["served"]["prediction"]), repr(out["replayed"]["prediction"]), "")
    err_console.print(table)
    verdict = "[green]identical[/]" if out["identical"] else "[bold red]differs[/]"
    err_console.print(f"replayed from the raw log: {verdict}")
