"""`affresco train --spec <yaml>`: one partitioned model, trained in one job, bundled and registered."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings

if TYPE_CHECKING:
    import pyarrow as pa

    from models.publish import TrainingSetRef
    from models.training import TrainingResult
    from models.validate import ModelDefinition
    from processors.definitions import FeatureGroup
    from streams.settings import KafkaSettings

__all__ = ["train"]


def train(
    spec: Path = typer.Option(..., "--spec", "-s", help="The model spec YAML, e.g. models/specs/eta.yaml."),
    definitions: Path | None = typer.Option(
        None, "--definitions", "-d", help="Read feature groups from YAML here instead of the registry."
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the bundle on the model topic (needs Kafka)."
    ),
    deploy: str | None = typer.Option(
        None, "--deploy", help="Also deploy the new version under this alias (e.g. prod)."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Fits (nodes x trials of one level) running at once."),
    seed: int = typer.Option(0, "--seed", help="Seed of every fit (subsampling)."),
    check: bool = typer.Option(
        False, "--check", help="Validate the spec and stop (only feature groups and the label rows' schema are read)."
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Train every node of a partitioned model in one job, export each to ONNX, write and register its bundle."""
    from affresco.settings import PlatformSettings
    from models.exceptions import ModelsError, SpecError
    from models.validate import label_schema_of, load_model_spec, referenced_groups
    from processors.definitions.yaml_loader import load_yaml_documents
    from processors.exceptions import ProcessorsError
    from state.exceptions import StateError
    from streams.exceptions import StreamsError

    if deploy and not register:
        fail("--deploy needs --register (an unregistered version cannot be deployed)")
    settings, kafka = PlatformSettings(), kafka_settings(bootstrap_servers)
    started = time.monotonic()
    docs, _ = load_yaml_documents(spec)
    try:
        groups = _groups(referenced_groups(docs[0]) if len(docs) == 1 else [], definitions, kafka)
        definition = load_model_spec(spec, groups, label_schema_of)
    except SpecError as exc:
        err_console.print(f"[bold red]error:[/] {len(exc.problems)} problem(s) in {spec}:", highlight=False)
        for problem in exc.problems:
            err_console.print(f"  - {problem}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (ProcessorsError, StreamsError) as exc:
        fail(str(exc))
    if check:
        err_console.print(f"{spec}: valid ({len(definition.inputs.inputs)} inputs)", highlight=False)
        return
    try:
        table, training_ref = _training_set(definition, settings.training_sets, kafka, settings.offline)
        version = _next_version(definition.name, settings.models, kafka if register else None)
        result = _train(definition, table, workers, seed)
        from models.publish import bundle_uri, registry_metrics, write_model_bundle

        ref = write_model_bundle(result, bundle_uri(settings.models, definition.name, version), version, training_ref)
        if register:
            from models.registry import ModelRegistry

            registry = ModelRegistry(kafka)
            registry.register(definition.name, version, ref.uri, ref.sha256, registry_metrics(result),
                              definition.spec.task, reason=f"trained from {training_ref.uri}")  # fmt: skip
            if deploy:
                registry.deploy(definition.name, version, deploy, reason="deployed by affresco train --deploy")
    except (ModelsError, ProcessorsError, StreamsError, StateError) as exc:
        fail(str(exc))
    _print_summary(result, version, ref.uri, err_console)
    summary = {"model": definition.name, "version": version, "bundle": ref.uri, "registered": register,
               "deployed": deploy, "nodes": len(result.nodes), "fits": result.fits,
               "training_seconds": round(result.seconds, 2), "seconds": round(time.monotonic() - started, 2),
               "metrics": {k: round(v, 6) for k, v in registry_metrics(result).items()}}  # fmt: skip
    typer.echo(json.dumps(summary))


def _groups(names: list[str], definitions: Path | None, settings: KafkaSettings) -> dict[str, FeatureGroup]:
    """The referenced feature groups that exist (latest versions); an unknown one is the spec's problem."""
    if definitions is not None:
        from processors.definitions import load_groups

        found: dict[str, FeatureGroup] = {}
        for g in load_groups([definitions]):
            if g.name not in found or g.version > found[g.name].version:
                found[g.name] = g
        return found
    from processors.registry import FeatureRegistry

    registry = FeatureRegistry(settings)
    registered = {rec.group for rec in registry.records().values()}
    return {group.name: group for group, _ in registry.resolve([n for n in names if n in registered])}


def _training_set(
    definition: ModelDefinition, directory: Path, settings: KafkaSettings, offline: Path
) -> tuple[pa.Table, TrainingSetRef]:
    """The persisted training set: the spec's Parquet file, or one built now and written under `directory`."""
    import pyarrow.parquet as pq

    from backfill.training import FeatureRequest, build_training_set
    from models.bundle import sha256_hex
    from models.publish import TrainingSetRef

    ts = definition.spec.training_set
    if ts.path is not None:
        path = Path(ts.path)
        built_from = None
    else:
        assert ts.labels is not None  # the spec demands labels or a path
        wanted: dict[str, list[str]] = {}
        for stored in definition.inputs.stored:
            wanted.setdefault(stored.group, []).append(stored.feature)
        requests = [FeatureRequest(definition.groups[g], tuple(f), definition.entities[g]) for g, f in wanted.items()]
        err_console.print(f"building the training set from {ts.labels} ({ts.source})…", highlight=False)
        built = build_training_set(ts.labels, requests, time_column=ts.time_field, label_type=ts.label_type,
                                   source=ts.source, settings=settings, offline_root=offline,
                                   workers=os.cpu_count() or 1)  # fmt: skip
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = directory / definition.name / f"{stamp}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(built.table, path)
        built_from = {"labels": ts.labels, "label_type": ts.label_type, "source": ts.source,
                      "invalid_labels": built.invalid_labels}  # fmt: skip
    data = path.read_bytes()
    table = pq.read_table(path)
    ref = TrainingSetRef(str(path.absolute()), sha256_hex(data), table.num_rows, built_from)
    return table, ref


def _next_version(model: str, root: str, settings: KafkaSettings | None) -> int:
    """The registry's next version (1 unregistered), moved past any bundle already written under it.

    Known before training, so that a collision (a bundle left by an unregistered run, or by a
    registration that failed) never costs a whole training run.
    """
    from models.bundle import bundle_exists
    from models.publish import bundle_uri

    version = 1
    if settings is not None:
        from models.registry import ModelRegistry

        version = ModelRegistry(settings).state().next_version(model)
    while bundle_exists(bundle_uri(root, model, version)):
        version += 1
    return version


def _train(definition: ModelDefinition, table: pa.Table, workers: int, seed: int) -> TrainingResult:
    from affresco.commands._progress import fits_progress
    from models.training import TrainingOptions, train_partitioned

    with fits_progress(f"training {definition.name}", err_console) as bar:
        task = bar.add_task("fits", total=None)

        def advance(what: str, done: int, planned: int) -> None:
            bar.update(task, completed=done, total=planned, description=what)

        return train_partitioned(definition, table, TrainingOptions(workers=workers, seed=seed), advance)


def _print_summary(result: TrainingResult, version: int, uri: str, console: Console) -> None:
    from rich.table import Table

    metric = result.definition.fallback_metric
    table = Table(title=f"{result.definition.name} v{version}: {len(result.nodes)} nodes, {result.fits} fits, "
                        f"{result.seconds:.1f} s", title_justify="left")  # fmt: skip
    table.add_column("node", overflow="fold")
    for column in ("train", "valid"):
        table.add_column(column, justify="right")
    table.add_column("served by", overflow="fold")
    for column in ("own", "served", "global mean", "node mean"):
        table.add_column(f"{column} {metric}" if column == "own" else column, justify="right")

    def fmt(values: dict[str, Any] | None) -> str:
        value = (values or {}).get(metric)
        return "" if value is None else f"{value:.4g}"

    for r in result.nodes.values():
        table.add_row(r.id, f"{r.rows_train:,}", f"{r.rows_validation:,}", "itself" if r.serves_itself else r.serves,
                      fmt(r.metrics.get("model")), fmt(r.metrics.get("served")),
                      fmt(r.metrics.get("baseline_global_mean")), fmt(r.metrics.get("baseline_node_mean")))  # fmt: skip
    console.print(table)
    for r in result.nodes.values():
        console.print(f"  {r.id}: {'keeps its model' if r.serves_itself else 'falls back'}, {r.reason}", soft_wrap=True,
                      highlight=False, markup=False)  # fmt: skip
    whole = result.metrics
    console.print(
        f"whole model on {result.split.to_json()['rows_validation']:,} held-out rows: {metric} "
        f"{fmt(whole['model'])} (global mean {fmt(whole['baseline_global_mean'])}, "
        f"node mean {fmt(whole['baseline_node_mean'])}); bundle {uri}",
        highlight=False,
    )
