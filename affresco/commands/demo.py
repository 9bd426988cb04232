"""`affresco demo`: the platform end to end on the embedded defaults (local Kafka).

Each step is an ordinary `affresco` command, run in-process, so the demo shows exactly what a user
would type. Idempotent: simulated history is produced once; re-running shows it again.
"""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.rule import Rule
from typer.main import get_command

import models
import monitoring as monitoring_pkg
import processors
from affresco.commands import _demo_live
from affresco.commands._common import fail, kafka_settings, parse_time_ms
from streams.exceptions import StreamsError

if TYPE_CHECKING:
    from streams.events import TripCompleted
    from streams.settings import KafkaSettings

__all__ = ["demo"]

console = Console()

_GROUPS = ("zone_demand", "zone_supply", "rider_history", "city_eta")
_MAX_EVENTS = 5_000_000  # a cap: the simulation stops at now

_BAD_LINES = (
    '{"event_time": 1767225600000, "driver_id": "d-1", "country": "US", "city": "nyc", "zone": "nyc-01", '
    '"status": "available"}\n'
    "{this is not json\n"
    '{"event_time": "yesterday", "driver_id": "d-2", "country": "US", "city": "nyc", "zone": "nyc-01", '
    '"status": "available"}\n'
    '{"event_time": 1767225600000, "driver_id": "d-3", "country": "US", "city": "nyc", "status": "flying"}\n'
)


def _run(args: list[str], *, input_text: str | None = None, expect_exit: int = 0) -> None:
    """Run one `affresco` command in-process and show it as the user would type it."""
    from affresco.cli import app

    console.print(f"[bold cyan]$ affresco {' '.join(args)}[/]", highlight=False)
    command = get_command(app)
    saved = sys.stdin
    if input_text is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(input_text.encode()))
    try:
        # Without standalone mode, click returns a command's exit code instead of exiting.
        result = command.main(args=args, standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    finally:
        sys.stdin = saved
    if code != expect_exit:
        fail(f"`affresco {' '.join(args)}` exited with {code}, expected {expect_exit}")


def demo(
    days: float = typer.Option(7.0, "--days", min=0.05, help="Simulated history: from this many days ago."),
    seed: int = typer.Option(7, "--seed", help="Simulation seed."),
    live_minutes: int = typer.Option(
        90,
        "--live",
        min=40,
        max=240,
        help="Minutes of live traffic at the end: the history stops that long ago (its last trips must end too).",
    ),
    drift_city: str | None = typer.Option(
        None, "--drift-city", help="The city that drives slower in the live traffic.", show_default="the busiest now"
    ),
    drift_speed: float = typer.Option(0.5, "--drift-speed", min=0.05, max=10, help="Its speed factor."),
    until: str | None = typer.Option(
        None,
        "--until",
        help="End of the simulated time (ISO-8601 or epoch ms, not ahead of now): the demo at "
        "another hour of the day, e.g. a quiet one.",
        show_default="now",
    ),
    live_rate: float = typer.Option(
        100.0, "--live-rate", min=1, help="Events per second of the live traffic (the processor keeps up)."
    ),
) -> None:
    """Run the platform end to end: simulate into Kafka, compute features, build a training set, train and deploy,
    serve live traffic with a drift, monitor it (the alert fires on the drifted city) and write the report."""
    from affresco.settings import PlatformSettings
    from streams.admin import TopicAdmin
    from streams.sim import DRIVER_PINGS_TOPIC, TRIPS_TOPIC
    from streams.topics import Topics

    settings = kafka_settings(None)
    try:
        admin = TopicAdmin(settings, timeout_s=5.0)
        admin.ping()
        existing = set(admin.names())
    except StreamsError as exc:
        fail(f"{exc}. Start Kafka first: `affresco infra up`.")

    if drift_city is not None:
        from affresco.commands.simulate import _config

        _config([f"city={drift_city},speed={drift_speed}"])  # an unknown city is refused before anything runs
    console.print(Rule("1. Simulate a ride-hailing marketplace into Kafka"))
    # The history ends `live_minutes` ago: the live traffic of step 15 fills that stretch (event times
    # in the past, none ahead of the clock).
    live_end = datetime.now(UTC).replace(microsecond=0)
    if until is not None:
        asked = datetime.fromtimestamp(parse_time_ms(until, "--until") / 1000, tz=UTC).replace(microsecond=0)
        if asked > live_end:
            fail(f"--until: {asked.isoformat()} is ahead of now ({live_end.isoformat()}); event times must not be")
        live_end = asked
    now = live_end - timedelta(minutes=live_minutes)
    start = (now - timedelta(days=days)).replace(minute=0, second=0)
    if TRIPS_TOPIC in existing and _has_history_since(settings, start):
        console.print(f"{TRIPS_TOPIC} already holds the history; not producing it twice (`make clean` resets).")
    else:
        # ~6.5k events per simulated hour, ending an hour ago, so windows are live when the demo reads them.
        _run(["simulate", "--events", str(_MAX_EVENTS), "--seed", str(seed), "--start", start.isoformat(),
              "--until", now.isoformat()])  # fmt: skip

    console.print(Rule("2. The topics, as Kafka sees them"))
    for topic in (TRIPS_TOPIC, DRIVER_PINGS_TOPIC):
        _run(["topics", "describe", topic])

    console.print(Rule("3. Read events back"))
    _run(["tail", TRIPS_TOPIC, "--from-beginning", "--max", "3"])
    _run(["tail", DRIVER_PINGS_TOPIC, "--from-beginning", "--max", "2"])

    console.print(Rule("4. Bad input goes to the dead-letter topic, with the reason"))
    _run(["produce", DRIVER_PINGS_TOPIC, "--type", "driver_ping"], input_text=_BAD_LINES, expect_exit=1)
    dlq = Topics(settings).dlq(DRIVER_PINGS_TOPIC)
    letters = admin.describe(dlq).messages
    console.print(f"{dlq} holds {letters} dead letters; the first three:")
    _run(["tail", dlq, "--from-beginning", "--max", "3"])

    console.print(Rule("5. Register the demo feature groups"))
    definitions = Path(processors.__file__).parent / "features"
    _run(["features", "apply", str(definitions)])
    _run(["features", "list"])

    console.print(Rule("6. Compute them: the bytewax processor, until the topics are drained"))
    _run(["process", "run", *_GROUPS, "--until-idle"])

    console.print(Rule("7. Read online values (RocksDB)"))
    sample = _recent_trip(settings)
    if sample is None:
        console.print("no completed trip found to sample entities from")
    else:
        _run(["features", "get", "zone_demand", sample.pickup_zone])
        _run(["features", "get", "city_eta", sample.city])
        _run(["features", "get", "rider_history", sample.rider_id])

    console.print(Rule("8. Backfill: replay the history through the same definitions into the offline store"))
    # From Kafka by timestamp, and from the Parquet raw archive (what Kafka may no longer hold).
    _run(["backfill", "zone_demand", "--from", start.isoformat(), "--to", now.isoformat()])
    _run(["backfill", "city_eta", "--from", start.isoformat(), "--to", now.isoformat(), "--source", "archive"])
    console.print(Rule("9. Consistency: a replay of the log gives the same values (mismatch rate 0)"))
    for group in ("zone_demand", "rider_history"):
        _run(["consistency", group, "--sample", "300"])

    console.print(Rule("10. A point-in-time-correct training set: trip ETAs with features as of each request"))
    out = Path(PlatformSettings().data_dir).absolute() / "training" / "eta.parquet"
    _run([
        "training-set", "--labels", TRIPS_TOPIC, "--out", str(out), "--entity", "zone_supply=pickup_zone",
        "--features", "zone_demand:requests_10m,zone_demand:max_surge_1h,zone_supply:available_drivers_10m,"
        "city_eta:mean_s_per_km_1h,rider_history:trips_7d",
    ])  # fmt: skip

    console.print(Rule("11. Train the ETA model over global → country → city in one job, register and deploy it"))
    spec = Path(models.__file__).parent / "specs" / "eta.yaml"
    _run(["train", "--spec", str(spec), "--deploy", "prod"])
    console.print(Rule("12. The leaderboard: every version's held-out metrics beside its baselines"))
    _run(["models", "list", "--model", "eta"])

    console.print(Rule("13. Serve it: `affresco serve`, live requests from a client, prediction events"))
    served = _serve_live_requests(settings, int(now.timestamp() * 1000))
    console.print(json.dumps(served["summary"]))
    console.print(Rule("14. Explain one prediction: replayed from the raw log alone, beside what was served"))
    _run(["explain", served["example"], "--model", "eta"])

    monitoring = _demo_live.live_part(
        _run, settings, groups=_GROUPS, start_ms=int(now.timestamp() * 1000),
        end_ms=int(live_end.timestamp() * 1000), seed=seed + 1, city=drift_city, speed=drift_speed,
        after_ms=600_000, rate=live_rate, data_dir=Path(PlatformSettings().data_dir),
        monitor_spec=Path(monitoring_pkg.__file__).parent / "specs" / "eta.yaml",
        step=lambda title: console.print(Rule(title)),
    )  # fmt: skip

    trips = admin.describe(TRIPS_TOPIC).messages
    pings = admin.describe(DRIVER_PINGS_TOPIC).messages
    console.print(Rule("Summary"))
    console.print(json.dumps({"trips_topic_events": trips, "driver_ping_events": pings, "dead_letters": letters,
                              "feature_groups": list(_GROUPS), "model": "eta@prod",
                              "predictions": served["summary"], "monitoring": monitoring}))  # fmt: skip


def _serve_live_requests(settings: KafkaSettings, at_ms: int, requests: int = 300) -> dict[str, Any]:
    """Start `affresco serve`, send it trip requests (at the end of the history, for riders and zones of
    the history) one by one as a client would, stop it."""
    import time

    from backfill.training import labels_from_topic
    from serving.client import PredictionClient
    from streams.admin import TopicAdmin
    from streams.sim import TRIPS_TOPIC
    from streams.topics import Topics

    recent, _ = labels_from_topic(TRIPS_TOPIC, "trip_requested", settings)
    topic = Topics(settings).predictions("eta")
    admin = TopicAdmin(settings)
    before = admin.describe(topic).messages if topic in admin.names() else 0
    with _demo_live.serving() as url, PredictionClient(url, model="eta", retries=0) as client:
        fallbacks, missing, ids = 0, 0, []
        for r in recent[-requests:]:
            row = {k: r[k] for k in ("pickup_zone", "city", "country", "rider_id", "distance_km")}
            scored = client.predict([{**row, "requested_at": at_ms}])[0]
            ids.append(scored["prediction_id"])
            fallbacks += scored["partition"] != scored["node"]
            missing += bool(scored["missing"])
        deadline = time.monotonic() + 30  # events leave off the response path; wait for them to land
        while admin.describe(topic).messages < before + len(ids) and time.monotonic() < deadline:
            time.sleep(0.3)
        emitted = admin.describe(topic).messages - before
    p50, p99 = client.stats.latency_ms(0.5), client.stats.latency_ms(0.99)
    summary = {"requests": len(ids), "client_p50_ms": round(p50 or 0, 2), "client_p99_ms": round(p99 or 0, 2),
               "fallbacks": fallbacks, "rows_with_missing_features": missing, "prediction_events": emitted}  # fmt: skip
    return {"summary": summary, "example": ids[len(ids) // 2]}


def _has_history_since(settings: KafkaSettings, start: datetime) -> bool:
    """Whether the trips topic already holds the demo's history from its first hour (else the demo simulates it)."""
    from streams.replay import ReplayRange, plan_replay
    from streams.sim import TRIPS_TOPIC

    since = int(start.timestamp() * 1000)
    first_hour = ReplayRange(start_ms=since, end_ms=since + 3_600_000)
    return any(r.size for r in plan_replay(TRIPS_TOPIC, first_hour, settings))


def _recent_trip(settings: KafkaSettings) -> TripCompleted | None:
    """The last completed trip of the simulated history (to pick entities worth looking at)."""
    from streams.consumer import header
    from streams.events import TripCompleted
    from streams.replay import ReplayRange, replay
    from streams.sim import TRIPS_TOPIC

    found: TripCompleted | None = None
    for batch in replay(TRIPS_TOPIC, ReplayRange(), settings):
        for m in batch:
            if header(m, "event_type") == b"trip_completed":
                event = TripCompleted.model_validate_json(m.value() or b"")
                if found is None or event.event_time > found.event_time:
                    found = event
    return found
