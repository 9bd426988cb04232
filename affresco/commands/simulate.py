"""`affresco simulate`: marketplace events to Kafka (or to a JSON-lines file)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import takewhile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import typer
from rich.table import Table

from affresco.commands._common import BootstrapOption, err_console, fail, kafka_settings, parse_time_ms
from streams.exceptions import StreamsError

if TYPE_CHECKING:
    from rich.progress import Progress

    from serving.client import PredictionClient
    from streams.admin import TopicAdmin
    from streams.events.base import Event
    from streams.producer import EventProducer
    from streams.sim.drift import Drift
    from streams.sim.generator import SimConfig
    from streams.sim.live import LiveStats

__all__ = ["parse_drift", "simulate"]

_PROGRESS_EVERY = 1_000  # events between progress-bar refreshes (a refresh costs more than an event)
_FLUSH_TIMEOUT_S = 30.0


@dataclass
class _RunStats:
    """What went out: counts per event type and topic, and the event-time span."""

    by_class: Counter[type[Event]] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None
    count: int = 0

    def add(self, event: Event, topic: str) -> None:
        self.by_class[type(event)] += 1  # by class: cheaper per event than looking up the type name
        self.by_topic[topic] += 1
        if self.first_ms is None:
            self.first_ms = event.event_time
        self.last_ms = event.event_time
        self.count += 1

    @property
    def by_type(self) -> dict[str, int]:
        return {cls.type_name(): n for cls, n in self.by_class.items()}


class _Pacer:
    """Sleeps so that event i goes out no earlier than i/rate seconds after the start (wall clock),
    and, when pacing, never before its own event time: a paced stream is a live one (event times are
    now, not ahead of it, which receivers would refuse as future events)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.started = time.monotonic()

    def wait(self, sent: int, next_event_time_ms: int | None = None) -> None:
        if self.rate is None:
            return
        ahead = self.started + sent / self.rate - time.monotonic()
        if next_event_time_ms is not None:
            ahead = max(ahead, next_event_time_ms / 1000 - time.time())
        if ahead > 0.002:  # skip micro-sleeps: they cost more than they pace
            time.sleep(ahead)


def _until_too_far_ahead(events: Iterator[Event], horizon_ms: int) -> Iterator[Event]:
    for event in events:
        if event.event_time >= horizon_ms:
            err_console.print(
                f"stopped before {_iso(horizon_ms)}: later event times are too far ahead of now to be accepted "
                "(give --rate for a live stream, or an earlier --start)",
                highlight=False,
            )
            return
        yield event


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000)):
        if ms >= size:
            return f"{ms / size:.2f} {unit}"
    return f"{ms / 1000:.2f} s"


def _paced(
    events: Iterator[Event], total: int, pacer: _Pacer, progress: Progress, stats: _RunStats, prefix: str
) -> Iterator[Event]:
    """Count, pace and show progress of events on their way out."""
    from streams.sim import topic_for

    task = progress.add_task("simulating", total=total)
    for i, event in enumerate(events, start=1):
        pacer.wait(i - 1, event.event_time)
        yield event
        stats.add(event, topic_for(event, prefix))
        if i % _PROGRESS_EVERY == 0:
            progress.update(task, completed=i)


def _write_lines(events: Iterator[Event], out: BinaryIO, *, live: bool) -> bool:
    """Write JSON lines; returns True when interrupted (Ctrl-C), after flushing what was written.

    `live` flushes every line, so that a paced stream is seen as it is paced, not a buffer at a time.
    """
    try:
        for event in events:
            out.write(event.model_dump_json().encode())
            out.write(b"\n")
            if live:
                out.flush()
    except KeyboardInterrupt:
        return True
    finally:
        out.flush()
    return False


def _produce(events: Iterator[Event], producer: EventProducer, prefix: str) -> bool:
    """Produce to each event's topic; returns True when interrupted (Ctrl-C). Raises `ProduceError`
    when some records were not delivered within the flush timeout."""
    from streams.sim import topic_for

    interrupted = False
    try:
        for i, event in enumerate(events, start=1):
            producer.send(topic_for(event, prefix), event)
            if i % 10_000 == 0:
                producer.poll(0)  # serve delivery reports so that failures surface while we run
    except KeyboardInterrupt:
        interrupted = True  # still deliver what was queued
    finally:  # also when the events' source failed (live mode): what was queued is delivered
        producer.flush(_FLUSH_TIMEOUT_S)
    return interrupted


def _summary(
    stats: _RunStats, wall_s: float, destination: str, delivered: int | None, live: _Live | None = None
) -> None:
    table = Table(title=f"simulated → {destination}", show_header=True)
    table.add_column("what")
    table.add_column("events", justify="right")
    for name, n in sorted(stats.by_type.items()):
        table.add_row(f"type {name}", f"{n:,}")
    for name, n in sorted(stats.by_topic.items()):
        table.add_row(f"topic {name}", f"{n:,}")
    table.add_row("total", f"{stats.count:,}")
    if delivered is not None:
        table.add_row("acknowledged by Kafka", f"{delivered:,}")
    if live is not None:
        table.add_row("predictions requested", f"{live.stats.requested:,}")
        table.add_row("predictions failed", f"{live.stats.failed:,}")
    err_console.print(table)
    if stats.first_ms is not None and stats.last_ms is not None:
        span = _duration(stats.last_ms - stats.first_ms)
        err_console.print(f"event time {_iso(stats.first_ms)} → {_iso(stats.last_ms)} ({span})", highlight=False)
    rate = stats.count / wall_s if wall_s > 0 else float("inf")
    err_console.print(f"{stats.count:,} events in {wall_s:.2f} s ({rate:,.0f} events/s)", highlight=False)
    if live is not None:
        err_console.print(live.describe(), highlight=False)


@dataclass
class _Live:
    """Live mode: the prediction client and what it did."""

    client: PredictionClient
    stats: LiveStats

    def describe(self) -> str:
        c = self.client.stats
        p50, p99 = c.latency_ms(0.5), c.latency_ms(0.99)
        latency = f"; latency p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None and p99 is not None else ""
        errors = f"; failures: {', '.join(f'{k} x{n}' for k, n in sorted(c.errors.items()))}" if c.errors else ""
        return (
            f"live: {self.stats.requested:,} predictions requested from {self.client.url} in {c.requests:,} "
            f"requests ({c.retries:,} retries), {self.stats.failed:,} failed{latency}{errors}"
        )


def _live(url: str, model: str, alias: str | None, wait_s: float) -> _Live:
    """A prediction client that is ready (its model served), or a clear failure naming the URL."""
    from serving.client import PredictionClient, PredictionServiceError
    from streams.sim.live import LiveStats

    try:
        client = PredictionClient(url, model=model, alias=alias)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--predict-url") from None
    try:
        client.wait_ready(timeout_s=wait_s)
    except PredictionServiceError as exc:
        client.close()
        fail(f"{exc}; start it with `affresco serve`, or give the right --predict-url")
    return _Live(client, LiveStats())


def parse_drift(text: str) -> Drift:
    """`city=<city>,speed=<factor>,after=<duration>` (after defaults to 0: from the start).

    >>> parse_drift("city=sao,speed=0.7,after=10m")
    Drift(city='sao', speed=0.7, after_ms=600000)
    """
    from processors.durations import parse_duration
    from streams.sim.drift import Drift

    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value or key not in ("city", "speed", "after"):
            msg = f"expected city=<city>,speed=<factor>[,after=<duration>], got {part.strip()!r} in {text!r}"
            raise ValueError(msg)
        if key in fields:
            msg = f"{key} is given twice in {text!r}"
            raise ValueError(msg)
        fields[key] = value
    missing = [k for k in ("city", "speed") if k not in fields]
    if missing:
        msg = f"{' and '.join(missing)} missing in {text!r} (expected city=<city>,speed=<factor>[,after=<duration>])"
        raise ValueError(msg)
    try:
        speed = float(fields["speed"])
    except ValueError:
        msg = f"speed must be a number, got {fields['speed']!r}"
        raise ValueError(msg) from None
    after_ms = parse_duration(fields["after"]) if "after" in fields and fields["after"] not in ("0", "0s") else 0
    return Drift(fields["city"], speed, after_ms)


def _config(drifts: list[str]) -> SimConfig:
    """The simulation's knobs from the CLI; each drift checked against the world's cities."""
    from streams.sim import default_world
    from streams.sim.generator import SimConfig

    cities = [c.id for c in default_world().cities]
    parsed = []
    for text in drifts:
        try:
            found = parse_drift(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--drift") from None
        if found.city not in cities:
            msg = f"no city {found.city!r} in the simulated world (cities: {', '.join(cities)})"
            raise typer.BadParameter(msg, param_hint="--drift")
        parsed.append(found)
    return SimConfig(drifts=tuple(parsed))


def simulate(
    events: int = typer.Option(10_000, "--events", "-n", min=0, help="How many events to generate."),
    seed: int = typer.Option(42, "--seed", help="Random seed: the same seed and start give the same events."),
    start: str | None = typer.Option(
        None,
        "--start",
        help="Event time of the simulation start, ISO-8601 (naive = UTC) or epoch ms.",
        show_default="now",
    ),
    until: str | None = typer.Option(
        None,
        "--until",
        help="Stop before the first event at or after this time (ISO-8601 or epoch ms); --events stays a cap.",
    ),
    rate: float | None = typer.Option(
        None,
        "--rate",
        help="Pace output to at most R events per wall-clock second, none before its event time (a live stream).",
    ),
    as_fast_as_possible: bool = typer.Option(
        False, "--as-fast-as-possible", help="No pacing (the default when --rate is not given)."
    ),
    out: str | None = typer.Option(
        None, "--out", "-o", help="Write JSON lines to this file ('-' for stdout) instead of Kafka."
    ),
    bootstrap_servers: str | None = BootstrapOption,
    partitions: int = typer.Option(4, "--partitions", min=1, help="Partitions of the domain topics if created."),
    topic_prefix: str = typer.Option(
        "", "--topic-prefix", help="Prefix of the domain topics, e.g. 'staging.' for staging.rides.trips."
    ),
    drift: list[str] = typer.Option(
        [],
        "--drift",
        help="Inject a drift, e.g. 'city=sao,speed=0.7,after=10m': that city drives 30% slower "
        "from 10 min after the start (repeatable).",
    ),
    predict_url: str | None = typer.Option(
        None,
        "--predict-url",
        help="Live mode: ask the prediction service at this URL (e.g. http://127.0.0.1:8080) for each trip's "
        "prediction before producing its events (requested_at = the request's event time, join_key = trip id).",
    ),
    model: str = typer.Option("eta", "--model", help="Live mode: the model to ask."),
    alias: str | None = typer.Option(
        None, "--alias", help="Live mode: the model's alias (x-model-alias).", show_default="the service's default"
    ),
    predict_batch: int = typer.Option(
        50, "--predict-batch", min=1, help="Live mode: at most this many trip requests per prediction request."
    ),
    predict_wait: float = typer.Option(
        30.0, "--predict-wait", min=0, help="Live mode: seconds to wait for the service to be ready."
    ),
) -> None:
    """Simulate the ride-hailing marketplace: trips (rides.trips) and driver pings (rides.driver_pings).

    Sorted by event time; the same --seed and --start give the same events. Topics keep records forever.
    With --predict-url (live mode) a client asks the service for every trip's prediction first, in
    batches; failed predictions are retried briefly, then counted (the trip still happens).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from streams.sim import simulate as simulate_events

    if rate is not None and as_fast_as_possible:
        msg = "give either --rate or --as-fast-as-possible, not both"
        raise typer.BadParameter(msg, param_hint="--rate")
    if rate is not None and rate <= 0:
        msg = f"expected a positive number of events per second, got {rate}"
        raise typer.BadParameter(msg, param_hint="--rate")
    start_ms = parse_time_ms(start, "--start") if start is not None else int(time.time() * 1000)
    until_ms = parse_time_ms(until, "--until") if until is not None else None
    if until_ms is not None and until_ms <= start_ms:
        msg = f"expected a time after the start ({_iso(start_ms)}), got {until!r}"
        raise typer.BadParameter(msg, param_hint="--until")
    if out not in (None, "-") and not Path(out).parent.is_dir():
        msg = f"expected a file in an existing directory, got {out!r}"
        raise typer.BadParameter(msg, param_hint="--out")

    stats = _RunStats()
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    started = time.monotonic()
    generated: Iterator[Event] = simulate_events(events, seed, start_ms, config=_config(drift))
    if until_ms is not None:
        generated = takewhile(lambda e: e.event_time < until_ms, generated)
    elif rate is None:
        # Unpaced events run ahead of the clock; past the allowed future skew every receiver (and the
        # broker, for record timestamps) would refuse them: stop there.
        from streams.settings import KafkaSettings

        generated = _until_too_far_ahead(generated, int(time.time() * 1000) + KafkaSettings().max_future_ms)
    stream = _paced(generated, events, _Pacer(rate), progress, stats, topic_prefix)
    live = _live(predict_url, model, alias, predict_wait) if predict_url is not None else None
    fatal: tuple[type[Exception], ...] = ()
    if live is not None:
        from serving.client import PredictionServiceError
        from streams.sim.live import with_predictions

        fatal = (PredictionServiceError,)
        # After the pacer: a request is predicted when it is due, not ahead of its time.
        stream = with_predictions(stream, live.client, batch_size=predict_batch, stats=live.stats)
    try:
        with progress:
            interrupted, destination, delivered = _write(
                stream, out, bootstrap_servers, partitions, topic_prefix, stats, flush_each=rate is not None
            )
    except fatal as exc:
        fail(f"{exc} (after {stats.count:,} events went out)")
    finally:
        if live is not None:
            live.client.close()
    _summary(stats, time.monotonic() - started, destination, delivered, live)
    if interrupted:
        raise typer.Exit(130)


def _write(
    stream: Iterator[Event],
    out: str | None,
    bootstrap_servers: str | None,
    partitions: int,
    topic_prefix: str,
    stats: _RunStats,
    *,
    flush_each: bool,
) -> tuple[bool, str, int | None]:
    """Send the stream to its destination; returns (interrupted, destination, delivered by Kafka)."""
    from streams.sim import domain_topic_specs

    if out == "-":
        return _write_lines(stream, typer.get_binary_stream("stdout"), live=flush_each), "stdout", None
    if out is not None:
        with Path(out).open("wb") as fh:
            return _write_lines(stream, fh, live=flush_each), out, None
    from confluent_kafka import KafkaException

    settings = kafka_settings(bootstrap_servers)
    destination = f"Kafka at {settings.bootstrap_servers}"
    admin_cls, producer_cls = _kafka_clients()
    try:
        # Fails fast (TopicError) when no broker answers, instead of queueing into the void.
        admin_cls(settings, timeout_s=5.0).ensure(domain_topic_specs(partitions, topic_prefix))
        producer = producer_cls(settings)
        interrupted = _produce(stream, producer, topic_prefix)
        delivered = producer.delivered
    except (StreamsError, KafkaException) as exc:
        fail(f"{exc} (after queueing {stats.count:,} events)" if stats.count else str(exc))
    return interrupted, destination, delivered


def _kafka_clients() -> tuple[type[TopicAdmin], type[EventProducer]]:
    """The Kafka clients, read off this module (see `__getattr__`) so that tests can replace them."""
    module = sys.modules[__name__]
    return module.TopicAdmin, module.EventProducer


def __getattr__(name: str) -> object:
    """`TopicAdmin` and `EventProducer`, imported when first used instead of by every command's --help."""
    if name == "TopicAdmin":
        from streams.admin import TopicAdmin

        return TopicAdmin
    if name == "EventProducer":
        from streams.producer import EventProducer

        return EventProducer
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
