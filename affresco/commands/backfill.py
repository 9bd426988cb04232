"""`affresco backfill`: replay a group's history through the same engine as the stream processor."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings, parse_time_ms
from affresco.commands._stores import open_online_store
from affresco.commands.process import resolve_groups
from processors.exceptions import ProcessorsError
from state.exceptions import StateError
from streams.exceptions import StreamsError

__all__ = ["backfill", "consistency"]


def backfill(
    group: str = typer.Argument(..., help="Feature group (name or name:vN)."),
    start: str = typer.Option(..., "--from", help="Start of the range (ISO-8601 or epoch ms), inclusive."),
    end: str = typer.Option(..., "--to", help="End of the range (ISO-8601 or epoch ms), exclusive."),
    source: str = typer.Option("kafka", "--source", help="kafka (by timestamp) or archive (the Parquet raw archive)."),
    load_online: bool = typer.Option(False, "--load-online", help="Upsert the final values into the online store."),
    store: str | None = typer.Option(None, "--store", help="rocksdb or cassandra.", envvar="AFFRESCO_ONLINE_STORE"),
    definitions: Path | None = typer.Option(None, "--definitions", "-d", help="YAML instead of the registry."),
    chunk: int = typer.Option(200_000, "--chunk", min=1, help="Records per chunk (bounds memory)."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Compute historical values and write them to the offline store; resumes if interrupted."""
    from affresco.commands._progress import records_progress
    from affresco.settings import PlatformSettings
    from backfill import BackfillJob, run_backfill

    if source not in ("kafka", "archive"):
        msg = f"expected kafka or archive, got {source!r}"
        raise typer.BadParameter(msg, param_hint="--source")
    start_ms, end_ms = parse_time_ms(start, "--from"), parse_time_ms(end, "--to")
    if end_ms <= start_ms:
        msg = f"--to ({end}) must be after --from ({start})"
        raise typer.BadParameter(msg, param_hint="--to")
    settings = PlatformSettings()
    kafka = kafka_settings(bootstrap_servers)
    try:
        [resolved] = resolve_groups([group], definitions, bootstrap_servers)
        job = BackfillJob(
            resolved, source, start_ms, end_ms, settings.offline, settings.data_dir.absolute() / "backfill",  # type: ignore[arg-type]
            chunk_size=chunk, load_online=load_online,
        )  # fmt: skip
        progress = records_progress(f"backfill {resolved.ref}", err_console)
        with progress:
            task = progress.add_task("backfill", total=None)

            def advance(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            report = run_backfill(job, kafka, lambda: open_online_store(settings, store), on_progress=advance)
    except (ProcessorsError, StreamsError, StateError) as exc:
        fail(str(exc))
    rate = round(report.read / report.seconds) if report.seconds else None
    typer.echo(json.dumps({"group": resolved.ref, "source": source, **report.__dict__, "records_per_s": rate}))


def consistency(
    group: str = typer.Argument(..., help="Feature group (name or name:vN)."),
    sample: int = typer.Option(1000, "--sample", min=1, help="Entities to compare (random, seeded)."),
    store: str | None = typer.Option(None, "--store", help="rocksdb or cassandra.", envvar="AFFRESCO_ONLINE_STORE"),
    definitions: Path | None = typer.Option(None, "--definitions", "-d", help="YAML instead of the registry."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Compare what the stream processor produced (online store, FeatureUpdate log) with a replay.

    Exit code 1 when any value differs.
    """
    from affresco.settings import PlatformSettings
    from backfill.consistency import check_consistency

    settings = PlatformSettings()
    kafka = kafka_settings(bootstrap_servers)
    try:
        [resolved] = resolve_groups([group], definitions, bootstrap_servers)
        report = check_consistency(
            resolved, kafka, lambda: open_online_store(settings, store, read_only=True), sample=sample
        )
    except (ProcessorsError, StreamsError, StateError) as exc:
        fail(str(exc))
    typer.echo(json.dumps({**report.__dict__, "mismatch_rate": report.mismatch_rate}, indent=2))
    if report.mismatches:
        raise typer.Exit(1)
