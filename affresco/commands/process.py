"""`affresco process run`: the stream processor (bytewax, or a PyFlink job) for feature groups."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from affresco.commands._common import BootstrapOption, fail, kafka_settings
from affresco.commands._stores import open_online_store
from processors.exceptions import ProcessorsError
from streams.exceptions import StreamsError

if TYPE_CHECKING:
    from processors.definitions import FeatureGroup
    from streams.settings import KafkaSettings

__all__ = ["app", "resolve_groups"]

app = typer.Typer(
    help="Run stream processors that compute feature groups from their source topics.", no_args_is_help=True
)
console = Console(stderr=True)


def resolve_groups(names: list[str], definitions: Path | None, bootstrap: str | None) -> list[FeatureGroup]:
    """Groups by name (or name:vN), from YAML when `definitions` is given, else from the registry."""
    if definitions is not None:
        from processors.definitions import load_groups

        by_name = {g.name: g for g in load_groups([definitions])} | {g.ref: g for g in load_groups([definitions])}
        missing = [n for n in names if n not in by_name]
        if missing:
            msg = f"{', '.join(missing)} not defined in {definitions} (defined: {', '.join(sorted(by_name))})"
            raise typer.BadParameter(msg, param_hint="GROUPS")
        return [by_name[n] for n in names]
    from processors.registry import FeatureRegistry

    registry = FeatureRegistry(kafka_settings(bootstrap))
    groups = []
    for group, rec in registry.resolve(names):
        if rec.status == "deprecated":
            console.print(f"[yellow]warning:[/] {rec.ref} is deprecated: {rec.deprecation_reason}")
        groups.append(group)
    return groups


@app.command("run")
def run(
    groups: list[str] = typer.Argument(..., help="Feature groups to compute (name or name:vN)."),
    until_idle: bool = typer.Option(False, "--until-idle", help="Stop at the end of the source topics."),
    store: str | None = typer.Option(None, "--store", help="rocksdb or cassandra.", envvar="AFFRESCO_ONLINE_STORE"),
    definitions: Path | None = typer.Option(
        None, "--definitions", "-d", help="Read definitions from YAML here instead of the registry."
    ),
    shards: int = typer.Option(4, "--shards", min=1, help="State shards per group."),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Kafka records per poll."),
    epoch_s: float = typer.Option(
        5.0, "--epoch", min=0.1, help="Seconds between state snapshots (and Parquet flushes); outputs never wait."
    ),
    no_mirror: bool = typer.Option(False, "--no-mirror", help="Do not write the Parquet mirror and archive."),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=1,
        max=65535,
        envvar="AFFRESCO_PROCESSOR_METRICS_PORT",
        help="Serve the processor's counters as Prometheus metrics at http://127.0.0.1:PORT/metrics.",
    ),
    topic_prefix: str | None = typer.Option(
        None,
        "--topic-prefix",
        envvar="AFFRESCO_KAFKA_TOPIC_PREFIX",
        help="Prefix of the output topics (<prefix>.features.<group>, <prefix>.dlq.<topic>): give a run its own.",
    ),
    engine: str = typer.Option("bytewax", "--engine", help="bytewax (one process) or flink (a PyFlink job)."),
    target: str = typer.Option(
        "local",
        "--target",
        help="flink only: local (an in-process mini-cluster) or cluster (submit to the cluster at "
        "AFFRESCO_INFRA_FLINK_REST_PORT, e.g. `affresco infra up --with flink`).",
    ),
    parallelism: int = typer.Option(2, "--parallelism", min=1, help="flink only: the job's parallelism."),
    work_dir: Path | None = typer.Option(
        None,
        "--work-dir",
        help="flink only: the job's config, log, checkpoints, summaries (default <data dir>/processors/<run>/flink-*).",
    ),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Consume the sources, update the online store, emit FeatureUpdate events, mirror to Parquet.

    Crash-safe: state and offsets are snapshotted every epoch; after a kill the processor resumes
    from the last snapshot and its idempotent, event-time-versioned writes never regress a value.
    """
    from affresco.settings import PlatformSettings
    from processors.runtime.flow import ProcessorOptions, run_processor
    from processors.runtime.sink import OutputConfig

    if store not in (None, "rocksdb", "cassandra"):
        msg = f"expected rocksdb or cassandra, got {store!r}"
        raise typer.BadParameter(msg, param_hint="--store")
    if engine not in ("bytewax", "flink"):
        msg = f"expected bytewax or flink, got {engine!r}"
        raise typer.BadParameter(msg, param_hint="--engine")
    settings = PlatformSettings()
    if engine == "flink":
        _check_flink_options(target, store or settings.online_store)
    kafka = kafka_settings(bootstrap_servers)
    if topic_prefix is not None:
        kafka = kafka.model_copy(update={"topic_prefix": topic_prefix})
    try:
        resolved = resolve_groups(groups, definitions, bootstrap_servers)
    except (ProcessorsError, StreamsError) as exc:
        fail(str(exc))
    if engine == "flink":
        _run_flink(resolved, kafka, target, parallelism, until_idle, work_dir)
        return
    run_name = "+".join(sorted(g.ref.replace(":", "-") for g in resolved)) + f"@{store or settings.online_store}"
    options = ProcessorOptions(
        until_idle=until_idle,
        batch_size=batch_size,
        shards=shards,
        epoch_s=epoch_s,
        recovery_dir=settings.recovery_dir(run_name),
        metrics_port=metrics_port,
    )
    output = OutputConfig(
        kafka=kafka,
        open_store=lambda: open_online_store(settings, store),
        mirror_root=None if no_mirror else settings.offline,
    )
    console.print(f"processing {', '.join(g.ref for g in resolved)} ({'until idle' if until_idle else 'following'})")
    started = time.monotonic()
    counters = run_processor(resolved, output, options)
    summary = {**counters.summary(), "seconds": round(time.monotonic() - started, 2)}
    typer.echo(json.dumps(summary))


def _check_flink_options(target: str, store: str) -> None:
    """What the Flink engine cannot do, refused before anything starts."""
    if target not in ("local", "cluster"):
        msg = f"expected local or cluster, got {target!r}"
        raise typer.BadParameter(msg, param_hint="--target")
    if store != "cassandra":
        fail(
            f"--engine flink needs --store cassandra, not {store}: every parallel subtask (and every TaskManager) "
            "writes the online store, and an embedded RocksDB store can be opened by one process only"
        )


def _run_flink(
    groups: list[FeatureGroup],
    kafka: KafkaSettings,
    target: str,
    parallelism: int,
    until_idle: bool,
    work_dir: Path | None,
) -> None:
    from affresco.settings import PlatformSettings
    from infra.flink import FlinkServer
    from infra.settings import InfraSettings
    from processors.flink.launcher import FlinkJobError, FlinkOptions, run_flink_job
    from processors.runtime.flow import _ensure_output_topics, _partition_counts
    from state.cassandra.options import CassandraSettings

    settings = PlatformSettings()
    infra = InfraSettings()
    server = FlinkServer(infra)
    run_name = "+".join(sorted(g.ref.replace(":", "-") for g in groups))
    options = FlinkOptions(
        run_dir=work_dir or settings.data_dir / "processors" / run_name / f"flink-{time.strftime('%Y%m%dT%H%M%S')}",
        flink_venv=infra.flink_venv,
        connector_jar=server.kafka_connector_jar,
        java_home=infra.java_home,
        parallelism=parallelism,
        until_idle=until_idle,
        store_options=CassandraSettings().model_dump(mode="json"),
        target=target,
        rest_url=server.rest_url,
        cluster_log=server.paths.log_file,
    )
    try:
        partitions = _partition_counts(kafka, sorted({g.topic for g in groups}))
        _ensure_output_topics(groups, kafka)
    except StreamsError as exc:
        fail(str(exc))
    where = "local mini-cluster" if target == "local" else f"the cluster at {server.rest_url}"
    console.print(
        f"processing {', '.join(g.ref for g in groups)} on Flink ({where}, parallelism {parallelism}, "
        f"{'until idle' if until_idle else 'following'}); log: {options.run_dir / 'job.log'}"
    )
    started = time.monotonic()
    try:
        summary = run_flink_job(groups, kafka, partitions, options)
    except FlinkJobError as exc:
        fail(str(exc))
    typer.echo(json.dumps({**summary, "seconds": round(time.monotonic() - started, 2)}))
