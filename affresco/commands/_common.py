"""Shared CLI plumbing: the Kafka option, time parsing, error exits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from streams.settings import KafkaSettings

__all__ = ["BootstrapOption", "err_console", "fail", "kafka_settings", "parse_time_ms"]

err_console = Console(stderr=True)

BootstrapOption = typer.Option(
    None,
    "--bootstrap-servers",
    "-b",
    envvar="AFFRESCO_KAFKA_BOOTSTRAP_SERVERS",
    help="Kafka bootstrap servers, host:port[,host:port].",
    show_default="127.0.0.1:9092",
)


def kafka_settings(bootstrap_servers: str | None) -> KafkaSettings:
    """Settings from the environment, with the command line's bootstrap servers if given."""
    from streams.settings import KafkaSettings

    settings = KafkaSettings()
    if bootstrap_servers:
        settings = settings.model_copy(update={"bootstrap_servers": bootstrap_servers})
    return settings


def parse_time_ms(value: str, option: str) -> int:
    """An ISO-8601 time (naive means UTC) or epoch milliseconds, as UTC epoch ms."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{option}: expected an ISO-8601 time such as 2026-11-01T08:00:00Z or epoch milliseconds, got {value!r}"
        raise typer.BadParameter(msg) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error (no traceback) and exit."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)
