"""`affresco topics create|list|describe`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from affresco.commands._common import BootstrapOption, fail, kafka_settings
from streams.exceptions import StreamsError

__all__ = ["app"]

app = typer.Typer(help="Create, list and describe Kafka topics.", no_args_is_help=True)
console = Console()


def _parse_config(items: list[str]) -> dict[str, str]:
    conf: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            msg = f"--config: expected KEY=VALUE such as retention.ms=86400000, got {item!r}"
            raise typer.BadParameter(msg)
        conf[key.strip()] = value.strip()
    return conf


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Topic name."),
    partitions: int = typer.Option(4, "--partitions", "-p", min=1, help="Number of partitions."),
    retention_ms: int | None = typer.Option(
        None, "--retention-ms", min=-1, help="retention.ms; -1 keeps records forever (needed for old event times)."
    ),
    compacted: bool = typer.Option(False, "--compacted", help="cleanup.policy=compact (latest value per key)."),
    config: list[str] = typer.Option([], "--config", "-c", help="Extra topic config KEY=VALUE (repeatable)."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Create a topic; does nothing if it exists already (idempotent)."""
    from streams.admin import TopicAdmin, TopicSpec

    spec = TopicSpec(name, partitions, retention_ms, compacted, _parse_config(config))
    try:
        created = TopicAdmin(kafka_settings(bootstrap_servers)).ensure([spec])
    except StreamsError as exc:
        fail(str(exc))
    console.print(f"created {name}" if created else f"{name} exists already (left unchanged)")


@app.command("list")
def list_topics(
    internal: bool = typer.Option(False, "--internal", help="Include Kafka's internal topics."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """List topic names, one per line."""
    from streams.admin import TopicAdmin

    try:
        names = TopicAdmin(kafka_settings(bootstrap_servers)).names(include_internal=internal)
    except StreamsError as exc:
        fail(str(exc))
    for n in names:
        typer.echo(n)


@app.command("describe")
def describe(
    name: str = typer.Argument(..., help="Topic name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Partitions (leader, offsets, message count) and the topic's non-default config."""
    from streams.admin import TopicAdmin

    try:
        desc = TopicAdmin(kafka_settings(bootstrap_servers)).describe(name)
    except StreamsError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "name": desc.name,
                    "messages": desc.messages,
                    "partitions": [p.__dict__ for p in desc.partitions],
                    "config": desc.config,
                },
                indent=2,
            )
        )
        return
    table = Table(title=f"{desc.name}: {len(desc.partitions)} partitions, {desc.messages} messages")
    for col in ("partition", "leader", "low", "high", "messages"):
        table.add_column(col, justify="right")
    for p in desc.partitions:
        table.add_row(str(p.partition), str(p.leader), str(p.low), str(p.high), str(p.messages))
    console.print(table)
    for k, v in sorted(desc.config.items()):
        console.print(f"  {k} = {v}")
