"""`affresco produce`, `affresco tail` and `affresco schemas`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import typer
from rich.console import Console

import streams
from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings, parse_time_ms
from streams.exceptions import StreamsError, UnknownEventTypeError

if TYPE_CHECKING:
    from streams.admin import TopicSpec
    from streams.codec import EventDecoder

__all__ = ["produce", "schemas_app", "tail"]

# streams.schemas.SCHEMA_DIR, without importing the event models for every command's --help.
SCHEMA_DIR = Path(streams.__file__).parent / "schemas"

schemas_app = typer.Typer(help="JSON Schemas of every event type.", no_args_is_help=True)
console = Console()


def _text(raw: str | bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _headers_of(msg: Any) -> dict[str, str | None]:
    from streams.consumer import HeadersError, message_headers

    try:
        return {h[0]: _text(h[1]) for h in (message_headers(msg) or [])}
    except HeadersError as exc:
        return {"(unreadable)": str(exc)}


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    yield from stream


def produce(
    topic: str = typer.Argument(..., help="Topic to produce to."),
    event_type: str | None = typer.Option(
        None,
        "--type",
        "-t",
        help="Validate each line as this event type (e.g. trip_requested), or 'auto' to use each line's "
        "event_type field (exact names only). Rejected lines go to the DLQ, also those the broker refuses.",
    ),
    file: Path | None = typer.Option(None, "--file", "-f", help="JSON-lines file; stdin when omitted or '-'."),
    key_field: str | None = typer.Option(None, "--key-field", help="Without --type: the field used as the key."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Produce JSON lines to TOPIC. With --type, invalid lines go to the DLQ and the exit code is 1."""
    from streams.admin import TopicAdmin
    from streams.codec import EventDecoder
    from streams.dlq import DeadLetterWriter
    from streams.events.registry import event_class
    from streams.ingest import ingest_lines
    from streams.producer import EventProducer

    decoder: EventDecoder | None = None
    settings = kafka_settings(bootstrap_servers)
    if event_type is not None:
        try:
            cls = None if event_type == "auto" else event_class(event_type)
        except UnknownEventTypeError as exc:
            raise typer.BadParameter(str(exc), param_hint="--type") from None
        decoder = EventDecoder(cls, max_bytes=settings.max_message_bytes, max_future_ms=settings.max_future_ms)
    if file is not None and str(file) != "-" and not file.is_file():
        msg = f"no such file: {file}"
        raise typer.BadParameter(msg, param_hint="--file")
    try:
        admin = TopicAdmin(settings)
        admin.ensure([_default_spec(topic)])
        # Delivery failures are collected: ingest_lines resends them alone, then dead-letters them.
        with EventProducer(settings, collect_failures=True) as producer:
            dlq = DeadLetterWriter(producer, admin)
            if file is None or str(file) == "-":
                report = ingest_lines(
                    _lines(sys.stdin.buffer),
                    topic,
                    producer,
                    dlq,
                    decoder=decoder,
                    key_field=key_field,
                    source_name="stdin",
                )
            else:
                with file.open("rb") as fh:
                    report = ingest_lines(
                        _lines(fh), topic, producer, dlq, decoder=decoder, key_field=key_field, source_name=str(file)
                    )
    except StreamsError as exc:
        fail(str(exc))
    summary = {
        "topic": topic,
        "lines": report.lines,
        "produced": report.produced,
        "dead_lettered": report.dead_lettered,
        "blank": report.blank,
        "reasons": dict(report.reasons),
        "by_type": dict(report.by_type),
        "dlq_topic": dlq.topics.dlq(topic) if report.dead_lettered else None,
    }
    if report.undelivered or report.errors:
        summary |= {"undelivered": report.undelivered, "errors": report.errors[:10]}
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        err_console.print(
            f"{report.produced} produced to {topic}, {report.dead_lettered} to the DLQ"
            + (f" ({summary['dlq_topic']}: {dict(report.reasons)})" if report.dead_lettered else "")
            + f", {report.blank} blank, of {report.lines} lines",
            highlight=False,
        )
    if not report.balanced:  # cannot happen unless ingest_lines has a bug; never hide it
        fail(f"line accounting does not balance: {summary}")
    if report.errors:
        fail(
            f"{len(report.errors)} record(s) were refused by the broker even when sent alone, "
            f"{report.undelivered} line(s) reached neither {topic} nor its DLQ; first: {'; '.join(report.errors[:3])}"
        )
    if report.dead_lettered:
        raise typer.Exit(1)


def _default_spec(topic: str) -> TopicSpec:
    from streams.admin import TopicSpec

    # Topics created implicitly keep everything: users produce historical event times here too.
    return TopicSpec(topic, partitions=4, retention_ms=-1)


def tail(
    topic: str = typer.Argument(..., help="Topic to read."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest record."),
    since: str | None = typer.Option(None, "--since", help="Start at this time (ISO-8601 or epoch ms)."),
    max_records: int | None = typer.Option(None, "--max", "-n", min=1, help="Stop after N records."),
    idle_timeout: float | None = typer.Option(
        None, "--idle-timeout", min=0.1, help="Stop after this many seconds without a record."
    ),
    meta: bool = typer.Option(False, "--meta", help="Wrap each value with topic/partition/offset/key/headers."),
    bootstrap_servers: str | None = BootstrapOption,
) -> None:
    """Print records of TOPIC as JSON lines (follows new records until --max / --idle-timeout / Ctrl-C)."""
    from streams.follow import follow

    since_ms = parse_time_ms(since, "--since") if since else None
    n = 0
    try:
        for msg in follow(
            topic,
            kafka_settings(bootstrap_servers),
            from_beginning=from_beginning,
            since_ms=since_ms,
            idle_timeout_s=idle_timeout,
        ):
            value = msg.value() or b""
            if meta:
                key = msg.key()
                try:
                    decoded: object = json.loads(value)
                except ValueError:
                    decoded = value.decode("utf-8", "replace")
                typer.echo(
                    json.dumps(
                        {
                            "topic": msg.topic(),
                            "partition": msg.partition(),
                            "offset": msg.offset(),
                            "timestamp": msg.timestamp()[1],
                            "key": _text(key),
                            "headers": _headers_of(msg),
                            "value": decoded,
                        }
                    )
                )
            else:
                typer.echo(value.decode("utf-8", "replace"))
            n += 1
            if max_records is not None and n >= max_records:
                break
    except StreamsError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@schemas_app.command("export")
def schemas_export(
    out: Path = typer.Option(SCHEMA_DIR, "--out", "-o", help="Directory to write <event_type>.v<N>.schema.json to."),
) -> None:
    """Write the JSON Schema of every event type (the checked-in copies live in streams/schemas/)."""
    from streams.schemas import export_schemas

    paths = export_schemas(out)
    console.print(f"wrote {len(paths)} schemas to {out}")


@schemas_app.command("list")
def schemas_list() -> None:
    """List event types with their schema version and key field."""
    from streams.events.registry import EVENT_TYPES

    for name, cls in sorted(EVENT_TYPES.items()):
        typer.echo(f"{name}\tv{cls.schema_version}\tkey={cls.key_field}")


@schemas_app.command("show")
def schemas_show(event_type: str = typer.Argument(..., help="Event type, e.g. trip_requested.")) -> None:
    """Print the JSON Schema of one event type."""
    from streams.events.registry import event_class
    from streams.schemas import render_schemas

    try:
        cls = event_class(event_type)
    except UnknownEventTypeError as exc:
        raise typer.BadParameter(str(exc), param_hint="EVENT_TYPE") from None
    typer.echo(render_schemas()[f"{cls.type_name()}.v{cls.schema_version}.schema.json"])
