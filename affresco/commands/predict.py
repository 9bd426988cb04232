"""`affresco predict-batch`: a registered model scored on many rows, features replayed from the log."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings

if TYPE_CHECKING:
    from serving.core import ScoredRow
    from serving.model import LoadedModel
    from streams.settings import KafkaSettings

__all__ = ["load_model", "predict_batch"]


def predict_batch(
    model: str = typer.Option(..., "--model", "-m", help="name, name@alias or name:version (default alias: prod)."),
    input_: str = typer.Option(..., "--input", "-i", help="A .parquet file of request rows, or a topic of events."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet file to write: the rows with their predictions."),
    event_type: str = typer.Option("trip_requested", "--event-type", help="Events of a topic input to score."),
    source: str = typer.Option("kafka", "--source", help="Where feature source events come from: kafka or archive."),
    emit: bool = typer.Option(
        False, "--emit", help="Also write a Prediction event per row to affresco.predictions.<model>."
    ),
    join_key: str | None = typer.Option(None, "--join-key", help="Row column joining predictions with outcomes."),
    definitions: Path | None = typer.Option(
        None, "--definitions", "-d", help="Feature groups from YAML, not the registry."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Score rows with a registered model: features as of 1 ms before each row's time, replayed from the log."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from affresco.settings import PlatformSettings
    from backfill.training import labels_from_topic, read_group_events
    from models.exceptions import ModelsError
    from processors.exceptions import ProcessorsError
    from serving.core import predict_replayed_batch
    from state.exceptions import StateError
    from streams.exceptions import StreamsError

    if source not in ("kafka", "archive"):
        msg = f"expected kafka or archive, got {source!r}"
        raise typer.BadParameter(msg, param_hint="--source")
    settings, kafka = PlatformSettings(), kafka_settings(bootstrap_servers)
    started = time.monotonic()
    try:
        loaded = load_model(model, kafka, definitions)
        if input_.endswith(".parquet"):
            rows = pq.read_table(input_).to_pylist()
        else:
            rows, _ = labels_from_topic(input_, event_type, kafka)
        if not rows:
            fail(f"no rows to score in {input_}")
        if join_key is not None and join_key not in rows[0]:
            fail(f"--join-key: the rows have no column {join_key!r} (columns: {', '.join(rows[0])})")
        now = int(time.time() * 1000)
        until = max(_time(row, loaded.time_field, now) for row in rows) + 1
        events = read_group_events([use.group for use in loaded.groups], source, until, kafka, settings.offline)
        scored = predict_replayed_batch(loaded, rows, events, now_ms=now)
        ids = [_prediction_id(loaded, row) for row in rows]
        emitted = _emit(loaded, rows, scored.rows(loaded), ids, join_key, kafka) if emit else 0
    except (ModelsError, ProcessorsError, StreamsError, StateError) as exc:
        fail(str(exc))
    out = pa.Table.from_pylist(rows)
    out = out.append_column("prediction_id", pa.array(ids, pa.string()))
    out = out.append_column("prediction", pa.array(scored.predictions, pa.float64()))
    out = out.append_column("partition", pa.array(scored.served_by, pa.string()))
    out = out.append_column("model", pa.repeat(loaded.name, len(rows)))
    out = out.append_column("model_version", pa.repeat(pa.scalar(loaded.version, pa.int32()), len(rows)))
    for column in (s.column for s in loaded.inputs.stored):
        if column not in out.column_names:
            out = out.append_column(column, pa.array(scored.frame.columns[column]))
    missing = [scored.frame.columns[s.column] for s in loaded.inputs.stored]
    output.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(out, output)
    seconds = time.monotonic() - started
    err_console.print(f"scored {len(rows):,} rows with {loaded.name} v{loaded.version} into {output}", highlight=False)
    summary = {"model": loaded.name, "version": loaded.version, "rows": len(rows), "out": str(output),
               "emitted": emitted, "by_partition": dict(Counter(scored.served_by).most_common()),
               "rows_with_missing_features": sum(None in values for values in zip(*missing, strict=True)),
               "seconds": round(seconds, 2), "rows_per_s": round(len(rows) / max(seconds, 1e-9))}  # fmt: skip
    typer.echo(json.dumps(summary))


def load_model(ref: str, settings: KafkaSettings, definitions: Path | None = None) -> LoadedModel:
    """`name`, `name@alias` or `name:version` from the registry, its bundle checked against the event's checksums."""
    from models.bundle import load_bundle
    from models.exceptions import ModelRegistryError
    from models.registry import ModelRegistry
    from serving.model import LoadedModel

    name, _, version = ref.partition(":")
    name, _, alias = name.partition("@")
    state = ModelRegistry(settings).state()
    if version:
        record = state.resolve(name, version)
    elif alias:
        record = state.resolve(name, alias)
    else:
        try:
            record = state.resolve(name, "prod")
        except ModelRegistryError:
            versions = [v for v in state.versions_of(name) if v.status == "registered"]
            if not versions:
                raise
            record = max(versions, key=lambda v: v.version)
    bundle = load_bundle(record.bundle_uri, record.sha256)
    return LoadedModel.from_bundle(bundle, _groups(bundle.manifest, settings, definitions))


def _groups(manifest: dict[str, Any], settings: KafkaSettings, definitions: Path | None) -> dict[str, Any]:
    wanted = {name: int(g["version"]) for name, g in manifest["feature_groups"].items()}
    if definitions is not None:
        from processors.definitions import load_groups

        return {g.name: g for g in load_groups([definitions]) if wanted.get(g.name) == g.version}
    from processors.registry import FeatureRegistry

    resolved = FeatureRegistry(settings).resolve([f"{name}:v{version}" for name, version in wanted.items()])
    return {group.name: group for group, _ in resolved}


def _time(row: dict[str, Any], time_field: str, now: int) -> int:
    value = row.get(time_field, row.get("event_time"))
    return now if value is None else int(value)


def _prediction_id(model: LoadedModel, row: dict[str, Any]) -> str:
    """Deterministic: the same row scored by the same version twice has the same id."""
    body = json.dumps(row, sort_keys=True, default=str).encode()
    return hashlib.sha256(f"{model.name}:{model.version}:".encode() + body).hexdigest()[:32]


def _emit(
    model: LoadedModel,
    rows: list[dict[str, Any]],
    scored: list[ScoredRow],
    ids: list[str],
    join_key: str | None,
    settings: KafkaSettings,
) -> int:
    from streams.admin import TopicAdmin
    from streams.events.platform import Prediction
    from streams.producer import EventProducer
    from streams.topics import Topics

    topics = Topics(settings)
    topic = topics.predictions(model.name)
    TopicAdmin(settings).ensure([topics.predictions_spec(model.name)])
    entity_columns = sorted({use.entity_column for use in model.groups} | set(model.levels))
    with EventProducer(settings) as producer:
        for row, s, prediction_id in zip(rows, scored, ids, strict=True):
            producer.send(topic, Prediction(
                event_time=s.request_time_ms, request_id=prediction_id, model=model.name,
                model_version=model.version, partition=s.served_by,
                entity_keys={c: str(row[c]) for c in entity_columns if row.get(c) is not None},
                features=s.features, prediction=s.prediction,
                join_key=None if join_key is None or row.get(join_key) is None else str(row[join_key]),
                inputs={f: row[f] for f in model.request_fields if row.get(f) is not None},
                feature_times=s.feature_times,
            ))  # fmt: skip
    return len(rows)
