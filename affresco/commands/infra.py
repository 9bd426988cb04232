"""`affresco infra up|down|status|fetch`: the local Kafka, Cassandra and Flink servers, without Docker."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from affresco.commands._common import fail

if TYPE_CHECKING:
    from infra import LocalInfra, ServiceStatus, UpResult

__all__ = ["app"]

app = typer.Typer(
    help=(
        "Start, check and stop local Kafka (KRaft, single node) and Cassandra, built from Maven Central jars, "
        "and a standalone Flink cluster (JobManager + TaskManagers) from the apache-flink wheel in .venv-flink, "
        "all run with Java 17. Settings come from AFFRESCO_INFRA_* environment variables (see infra/README.md)."
    ),
    no_args_is_help=True,
)
console = Console()


class Service(StrEnum):
    kafka = "kafka"
    cassandra = "cassandra"
    flink = "flink"


_STATE_STYLE = {"running": "green", "started": "green", "reused": "green", "external": "yellow", "stopped": "dim"}

DataDirOption = typer.Option(
    None,
    "--data-dir",
    envvar=["AFFRESCO_DATA_DIR", "AFFRESCO_INFRA_DATA_DIR"],
    show_envvar=True,
    help="Where jars, configs, data, logs and pid files live.",
    show_default="./.affresco",
)
VerboseOption = typer.Option(False, "--verbose", "-v", help="Show debug logging.")


@app.command()
def up(
    with_: list[Service] = typer.Option(
        [], "--with", metavar="SERVICE", help="Also start cassandra or flink (repeatable)."
    ),
    only: list[Service] = typer.Option(
        [], "--only", metavar="SERVICE", help="Start only kafka, cassandra or flink (repeatable)."
    ),
    started_file: Path | None = typer.Option(
        None,
        "--started-file",
        help="Write the names of the servers this call started (not reused), one per line: "
        "scripts stop exactly those afterwards.",
    ),
    data_dir: Path | None = DataDirOption,
    verbose: bool = VerboseOption,
) -> None:
    """Start the servers (Kafka by default) and wait until they answer; reuse any already running."""
    from infra import DEFAULT_SERVICES, InfraError

    services = {s.value for s in only} if only else set(DEFAULT_SERVICES) | {s.value for s in with_}
    infra = _infra(data_dir, verbose)
    try:
        results = infra.ensure(services)
    except InfraError as exc:
        fail(str(exc))
    finally:
        if started_file is not None:
            # Written even on failure: a server that did start must still be stopped by the caller.
            started = sorted(infra.started_by_this_process)
            started_file.write_text("".join(f"{name}\n" for name in started))
    console.print(_up_table(results))
    console.print(f"data, logs and pid files: {infra.settings.data_dir}", highlight=False)


@app.command()
def down(
    only: list[Service] = typer.Option(
        [], "--only", metavar="SERVICE", help="Stop only kafka, cassandra or flink (default: all; repeatable)."
    ),
    data_dir: Path | None = DataDirOption,
    verbose: bool = VerboseOption,
) -> None:
    """Stop the servers `up` started (SIGTERM, then SIGKILL after AFFRESCO_INFRA_STOP_TIMEOUT_S)."""
    from infra import InfraError

    infra = _infra(data_dir, verbose)
    try:
        stopped = infra.down({s.value for s in only} or None)
    except InfraError as exc:
        fail(str(exc))
    console.print(f"stopped {', '.join(sorted(stopped))}" if stopped else "nothing of ours was running")


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list, one object per service)."),
    data_dir: Path | None = DataDirOption,
    verbose: bool = VerboseOption,
) -> None:
    """Show each server: running or stopped, pid, address, and whether it answers a real client query."""
    from infra import InfraError

    infra = _infra(data_dir, verbose)
    try:
        statuses = infra.status()
    except InfraError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in statuses], indent=2))
    else:
        console.print(_status_table(statuses))


@app.command()
def fetch(
    only: list[Service] = typer.Option(
        [],
        "--only",
        metavar="SERVICE",
        help="Fetch only the jars of kafka, cassandra or flink (default: all; repeatable).",
    ),
    force: bool = typer.Option(False, "--force", help="Fetch again even if the jars are there."),
    data_dir: Path | None = DataDirOption,
    verbose: bool = VerboseOption,
) -> None:
    """Download the server jars from Maven Central with `mvn` (once; `up` does it when needed)."""
    from infra import InfraError

    infra = _infra(data_dir, verbose)
    try:
        fetched = infra.fetch({s.value for s in only} or None, force=force)
    except InfraError as exc:
        fail(str(exc))
    libs = infra.settings.data_dir / "libs"
    console.print(f"fetched {', '.join(sorted(fetched))} into {libs}" if fetched else f"jars already in {libs}")


def _infra(data_dir: Path | None, verbose: bool) -> LocalInfra:
    from pydantic import ValidationError

    from infra import InfraSettings, LocalInfra

    _configure_logging(verbose)
    try:
        settings = InfraSettings(data_dir=data_dir) if data_dir is not None else InfraSettings()
    except ValidationError as exc:
        fail(f"invalid infra settings (AFFRESCO_INFRA_* environment variables): {exc}", code=2)
    return LocalInfra(settings)


def _configure_logging(verbose: bool) -> None:
    """Progress from `infra/` on stderr; driver chatter only when it matters."""
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False, log_time_format="[%X]")
    for name in ("infra", "state"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, RichHandler) for h in logger.handlers):
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        logger.propagate = False
    # The probes expect refusals while a server boots; cassandra-driver would log each as a warning.
    logging.getLogger("cassandra").setLevel(logging.DEBUG if verbose else logging.ERROR)
    logging.getLogger("infra.kafka.librdkafka").setLevel(logging.DEBUG if verbose else logging.ERROR)


def _up_table(results: list[UpResult]) -> Table:
    table = Table("service", "state", "pid", "address", "ready in", "answer")
    for r in results:
        style = _STATE_STYLE.get(r.action, "")
        table.add_row(r.name, f"[{style}]{r.action}[/]", _pid(r.pid), r.address, f"{r.seconds:.1f} s", escape(r.detail))
    return table


def _status_table(statuses: list[ServiceStatus]) -> Table:
    table = Table("service", "state", "pid", "address", "answers", "detail")
    for s in statuses:
        style = _STATE_STYLE.get(s.state, "")
        answers = "[green]yes[/]" if s.answering else "[red]no[/]"
        table.add_row(s.name, f"[{style}]{s.state}[/]", _pid(s.pid), s.address, answers, escape(s.detail))
    return table


def _pid(pid: int | None) -> str:
    return "-" if pid is None else str(pid)
