"""The marketplace simulator: determinism, ordering, trip consistency, ground truth, CLI."""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from pathlib import Path
from typing import ClassVar

import numpy as np
import orjson
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from affresco.commands import simulate as simulate_cmd
from streams.admin import TopicSpec
from streams.events.base import MIN_EVENT_TIME_MS, Event
from streams.events.domain import DriverPing, TripCancelled, TripCompleted, TripRequested
from streams.events.registry import any_event_adapter
from streams.exceptions import ProduceError
from streams.settings import KafkaSettings
from streams.sim import (
    DRIVER_PINGS_TOPIC,
    LAST_START_MS,
    TRIPS_TOPIC,
    LocalTime,
    SimConfig,
    Simulator,
    Zone,
    default_world,
    domain_topic_specs,
    ground_truth_eta_s,
    local_time,
    oracle_eta_s,
    simulate,
    topic_for,
)

START = 1_714_348_800_000  # Monday 2024-04-29 00:00 UTC
WEEK_MS = 7 * 86_400_000
WORLD = default_world()


@pytest.fixture(scope="module")
def stream() -> list[Event]:
    """~13 simulated hours with default settings (rush hour included in every city)."""
    return list(simulate(80_000, seed=11, start_ms=START))


@pytest.fixture(scope="module")
def week() -> list[Event]:
    """A whole week at a tenth of the demand and rare pings: enough trips for aggregate shapes."""
    config = SimConfig(demand_scale=0.1, ping_interval_s=86_400, offline_check_s=3_600)
    events = []
    for event in Simulator(seed=5, start_ms=START, config=config):
        if event.event_time >= START + WEEK_MS:
            break
        events.append(event)
    return events


def _local(event: TripRequested) -> LocalTime:
    return local_time(event.event_time, WORLD.city(event.city).spec.utc_offset_h)


# -- the stream as a whole ---------------------------------------------------------------------------
def test_same_seed_gives_identical_events() -> None:
    assert list(simulate(3_000, seed=7, start_ms=START)) == list(simulate(3_000, seed=7, start_ms=START))


def test_different_seed_gives_different_events() -> None:
    a = [e.model_dump() for e in simulate(500, seed=1, start_ms=START)]
    b = [e.model_dump() for e in simulate(500, seed=2, start_ms=START)]
    assert a != b
    # Trip ids differ too, so two runs can share a topic without colliding.
    ids_a = {e["trip_id"] for e in a if "trip_id" in e}
    ids_b = {e["trip_id"] for e in b if "trip_id" in e}
    assert ids_a and ids_b and not ids_a & ids_b


@pytest.mark.parametrize("n", [0, 1, 17, 5_000])
def test_exactly_n_events(n: int) -> None:
    assert sum(1 for _ in simulate(n, seed=3, start_ms=START)) == n


def test_a_start_outside_valid_event_times_is_refused() -> None:
    # Every simulated event must be valid: event times lie in [2000-01-01, 2100-01-01).
    with pytest.raises(ValueError, match=r"expected start_ms from 946684800000 .* got 0"):
        Simulator(seed=1, start_ms=0)
    with pytest.raises(ValueError, match="got 4102444800000"):
        Simulator(seed=1, start_ms=4_102_444_800_000)
    last = list(simulate(200, seed=1, start_ms=LAST_START_MS))
    assert all(any_event_adapter.validate_json(e.model_dump_json()) == e for e in last)


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="n_events must be >= 0, got -1"):
        simulate(-1)


def test_sorted_by_event_time_from_start(stream: list[Event]) -> None:
    times = [e.event_time for e in stream]
    assert times == sorted(times)
    assert times[0] >= START
    assert times[-1] - START > 6 * 3_600_000  # the stream does cover hours, not a burst


def test_every_event_is_a_valid_model(stream: list[Event]) -> None:
    for event in stream:
        assert any_event_adapter.validate_json(event.model_dump_json()) == event


def test_all_event_types_and_statuses_occur(stream: list[Event]) -> None:
    types = Counter(type(e) for e in stream)
    assert set(types) == {TripRequested, TripCompleted, TripCancelled, DriverPing}
    statuses = Counter(e.status for e in stream if isinstance(e, DriverPing))
    assert set(statuses) == {"available", "on_trip", "offline"}
    reasons = Counter(e.cancelled_by for e in stream if isinstance(e, TripCancelled))
    assert set(reasons) == {"rider", "driver", "system"}


def test_start_is_respected() -> None:
    start = int(datetime(2021, 3, 14, 15, 9, tzinfo=UTC).timestamp() * 1000)
    events = list(simulate(200, seed=1, start_ms=start))
    assert start <= events[0].event_time < start + 60_000
    assert all(start <= e.event_time < start + 3_600_000 for e in events)


def test_no_start_means_now() -> None:
    before = int(time.time() * 1000)
    sim = Simulator(seed=1)
    assert before <= sim.start_ms <= int(time.time() * 1000)
    assert next(iter(sim)).event_time >= sim.start_ms


def test_memory_stays_bounded() -> None:
    sim = Simulator(seed=2, start_ms=START)
    for _ in islice(sim, 100_000):
        pass
    # One entry per driver plus the trips in flight: nothing proportional to the events produced.
    assert len(sim._heap) < len(WORLD.driver_ids) + 3_000


# -- trips -------------------------------------------------------------------------------------------
def test_outcomes_follow_their_requests(stream: list[Event]) -> None:
    requests: dict[str, TripRequested] = {}
    outcomes = 0
    for event in stream:
        if isinstance(event, TripRequested):
            assert event.trip_id not in requests
            requests[event.trip_id] = event
        elif isinstance(event, TripCompleted | TripCancelled):
            request = requests.pop(event.trip_id)  # KeyError: no earlier request, or two outcomes
            outcomes += 1
            assert event.requested_at == request.event_time < event.event_time
            assert (event.rider_id, event.city, event.country, event.pickup_zone) == (
                request.rider_id,
                request.city,
                request.country,
                request.pickup_zone,
            )
            if isinstance(event, TripCompleted):
                assert event.event_time - event.requested_at == round(event.eta_s * 1000)
                assert (event.dropoff_zone, event.distance_km) == (request.dropoff_zone, request.distance_km)
                fare = WORLD.city(event.city).spec.fare.fare(event.distance_km, event.eta_s, request.surge)
                assert event.fare == fare
    assert outcomes > 10_000
    # What is still open at the end are trips requested in the last hour or so.
    assert all(r.event_time > stream[-1].event_time - 3 * 3_600_000 for r in requests.values())


def test_ids_belong_to_their_home_city(stream: list[Event]) -> None:
    for event in stream:
        assert isinstance(event, TripRequested | TripCompleted | TripCancelled | DriverPing)
        city = WORLD.city(event.city)
        assert city.country == event.country
        if isinstance(event, TripRequested):
            assert re.fullmatch(r"r-\d{6}", event.rider_id)
            assert event.rider_id in city.rider_ids
            assert WORLD.zone(event.pickup_zone).city_index == city.index
            assert WORLD.zone(event.dropoff_zone).city_index == city.index
        elif isinstance(event, TripCompleted | DriverPing):
            assert re.fullmatch(r"d-\d{5}", event.driver_id)
            assert WORLD.driver_city[int(event.driver_id[2:]) - 1] == city.index


def test_cancellations_rise_with_surge(stream: list[Event]) -> None:
    surge = {e.trip_id: e.surge for e in stream if isinstance(e, TripRequested)}
    ended = [e for e in stream if isinstance(e, TripCompleted | TripCancelled)]

    def cancel_rate(trips: list[TripCompleted | TripCancelled]) -> float:
        return sum(isinstance(e, TripCancelled) for e in trips) / len(trips)

    calm = [e for e in ended if surge[e.trip_id] == 1.0]
    surging = [e for e in ended if surge[e.trip_id] >= 1.5]
    assert len(surging) > 300
    assert cancel_rate(surging) > 2 * cancel_rate(calm)


def test_surge_is_highest_at_rush_hour(stream: list[Event]) -> None:
    by_hour: dict[bool, list[float]] = defaultdict(list)
    for e in stream:
        if isinstance(e, TripRequested) and not _local(e).weekend:
            by_hour[_local(e).hour in (8, 18)].append(e.surge)
    assert statistics.mean(by_hour[True]) > statistics.mean(by_hour[False]) + 0.1


# -- ground truth ------------------------------------------------------------------------------------
zones = st.sampled_from(WORLD.zones)
hours = st.integers(0, 23)
weekdays = st.integers(0, 6)


@given(zone=zones, hour=hours, weekday=weekdays, surge=st.floats(1.0, 3.0), d=st.floats(0.1, 200.0))
def test_longer_distance_means_longer_eta(zone: Zone, hour: int, weekday: int, surge: float, d: float) -> None:
    city = WORLD.cities[zone.city_index]
    local = LocalTime(hour, weekday)
    short = ground_truth_eta_s(d, city=city, pickup_zone=zone, local=local, surge=surge)
    long = ground_truth_eta_s(d * 1.5, city=city, pickup_zone=zone, local=local, surge=surge)
    assert 0 < short < long


def test_rush_hour_is_slower_than_3am() -> None:
    for weekday in range(5):
        for city in WORLD.cities:
            for zone in city.zones:
                night = ground_truth_eta_s(6.0, city=city, pickup_zone=zone, local=LocalTime(3, weekday))
                for rush in (7, 8, 9, 17, 18, 19):
                    slow = ground_truth_eta_s(6.0, city=city, pickup_zone=zone, local=LocalTime(rush, weekday))
                    assert slow > 1.3 * night


def test_noise_is_lognormal_around_the_median(stream: list[Event]) -> None:
    requests = {e.trip_id: e for e in stream if isinstance(e, TripRequested)}
    log_ratios = [math.log(e.eta_s / oracle_eta_s(requests[e.trip_id])) for e in stream if isinstance(e, TripCompleted)]
    assert abs(statistics.mean(log_ratios)) < 0.01
    assert statistics.stdev(log_ratios) == pytest.approx(0.12, abs=0.01)


def test_simulated_rush_hour_trips_are_slower(stream: list[Event]) -> None:
    requests = {e.trip_id: e for e in stream if isinstance(e, TripRequested)}
    pace: dict[str, list[float]] = defaultdict(list)  # seconds per km
    for e in stream:
        if isinstance(e, TripCompleted) and e.distance_km > 3:
            hour = _local(requests[e.trip_id]).hour
            if hour in (7, 8, 9, 17, 18, 19):
                pace["rush"].append(e.eta_s / e.distance_km)
            elif hour < 5:
                pace["night"].append(e.eta_s / e.distance_km)
    assert statistics.mean(pace["rush"]) > 1.3 * statistics.mean(pace["night"])


def test_a_model_can_learn_the_eta(stream: list[Event]) -> None:
    """Least squares on log(distance), distance, city and local hour explains most of log(eta)."""
    requests = {e.trip_id: e for e in stream if isinstance(e, TripRequested)}
    rows, y = [], []
    for e in stream:
        if isinstance(e, TripCompleted):
            r = requests[e.trip_id]
            hour = _local(r).hour
            city = WORLD.city(r.city).index
            rows.append(
                [1.0, math.log(r.distance_km), r.distance_km, r.surge]
                + [float(city == c) for c in range(len(WORLD.cities))]
                + [float(hour == h) for h in range(24)]
            )
            y.append(math.log(e.eta_s))
    x, target = np.array(rows), np.array(y)
    coef = np.linalg.lstsq(x, target, rcond=None)[0]
    r2 = 1 - np.var(target - x @ coef) / np.var(target)
    assert r2 > 0.8


# -- demand shapes -----------------------------------------------------------------------------------
def test_hour_weekday_and_city_effects_in_counts(week: list[Event]) -> None:
    requests = [e for e in week if isinstance(e, TripRequested)]
    by_hour = Counter(_local(e).hour for e in requests if not _local(e).weekend)
    assert by_hour[8] > 5 * by_hour[3]
    assert by_hour[18] > 1.4 * by_hour[14]
    by_day = Counter(_local(e).weekday for e in requests)
    assert by_day[4] > 1.3 * by_day[6]  # Friday vs Sunday
    weekend_by_hour = Counter(_local(e).hour for e in requests if _local(e).weekend)
    assert weekend_by_hour[1] / 2 > 2.5 * by_hour[1] / 5  # weekend nightlife, per day
    by_city = Counter(e.city for e in requests)
    assert by_city["nyc"] > 2.5 * by_city["man"]


def test_drivers_online_follow_the_supply_profile(stream: list[Event]) -> None:
    # London is on UTC and the stream covers Monday 00:00-13:00 there.
    pings = [e for e in stream if isinstance(e, DriverPing) and e.city == "lon"]
    coming_online = Counter(local_time(p.event_time, 0).hour for p in pings if p.status == "available")
    going_offline = Counter(local_time(p.event_time, 0).hour for p in pings if p.status == "offline")
    # Drivers start shifts for the morning peak and end them when it is over.
    assert coming_online[6] + coming_online[7] > coming_online[2] + coming_online[3]
    assert going_offline[9] + going_offline[10] > going_offline[6] + going_offline[7]


# -- time and topics ---------------------------------------------------------------------------------
@given(ms=st.integers(0, 4_102_444_800_000), offset=st.integers(-12, 14))
def test_local_time_matches_datetime(ms: int, offset: int) -> None:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC) + timedelta(hours=offset)
    assert local_time(ms, offset) == LocalTime(dt.hour, dt.weekday())


def test_topics() -> None:
    event = next(e for e in simulate(50, seed=1, start_ms=START) if isinstance(e, TripRequested))
    assert topic_for(event) == TRIPS_TOPIC == "rides.trips"
    ping = DriverPing(event_time=START, driver_id="d-00001", country="US", city="sfo", zone="sfo-01", status="offline")
    assert topic_for(ping) == DRIVER_PINGS_TOPIC == "rides.driver_pings"
    specs = domain_topic_specs(partitions=6)
    assert {s.name for s in specs} == {TRIPS_TOPIC, DRIVER_PINGS_TOPIC}
    assert all(s.partitions == 6 and s.retention_ms == -1 and not s.compacted for s in specs)


def test_world_lookups() -> None:
    assert len(WORLD.countries) == 3
    assert all(2 <= len(c.cities) <= 3 for c in WORLD.countries)
    assert all(6 <= len(c.zones) <= 20 for c in WORLD.cities)
    assert WORLD.zone("nyc-03").id == "nyc-03"
    with pytest.raises(KeyError, match="unknown city 'xyz'; expected one of: sfo"):
        WORLD.city("xyz")
    with pytest.raises(KeyError, match="unknown zone 'nyc-99'"):
        WORLD.zone("nyc-99")


# -- properties --------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(0, 400),
    start=st.integers(MIN_EVENT_TIME_MS, LAST_START_MS),
    scale=st.sampled_from([0.05, 1.0, 20.0]),
)
def test_any_run_is_exact_sorted_and_consistent(seed: int, n: int, start: int, scale: float) -> None:
    events = list(simulate(n, seed=seed, start_ms=start, config=SimConfig(demand_scale=scale)))
    assert len(events) == n
    assert all(a.event_time <= b.event_time for a, b in pairwise(events))
    assert all(e.event_time >= start for e in events)
    requested = {e.trip_id: e.event_time for e in events if isinstance(e, TripRequested)}
    for e in events:
        if isinstance(e, TripCompleted | TripCancelled):
            assert requested[e.trip_id] == e.requested_at < e.event_time


# -- the CLI -----------------------------------------------------------------------------------------
def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("simulate")(simulate_cmd.simulate)
    app.command("noop")(lambda: None)  # two commands, so "simulate" stays a subcommand as in affresco
    return app


runner = CliRunner()


def _said(text: str) -> str:
    """Terminal output as one line: rich wraps long messages and draws boxes around typer's errors."""
    return " ".join(text.replace("│", " ").split())


def test_cli_writes_json_lines_to_stdout() -> None:
    result = runner.invoke(
        _app(), ["simulate", "--events", "300", "--seed", "9", "--start", "2024-04-29T08:00:00Z", "--out", "-"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 300
    expected = [e.model_dump() for e in simulate(300, seed=9, start_ms=START + 8 * 3_600_000)]
    assert [orjson.loads(line) for line in lines] == expected
    assert "300 events" in _said(result.stderr) and "rides.trips" in _said(result.stderr)


def test_cli_writes_json_lines_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = runner.invoke(_app(), ["simulate", "-n", "1000", "--start", "1714348800000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    events = [any_event_adapter.validate_json(line) for line in out.read_bytes().splitlines()]
    assert events == list(simulate(1000, seed=42, start_ms=START))


def test_cli_stops_before_until(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    until = START + 2 * 3_600_000
    args = ["simulate", "-n", "100000", "--start", str(START), "--until", str(until), "--out", str(out)]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    events = [any_event_adapter.validate_json(line) for line in out.read_bytes().splitlines()]
    expected = [e for e in simulate(100_000, seed=42, start_ms=START) if e.event_time < until]
    assert events == expected and 1000 < len(events) < 100_000  # the time bound ended it, not --events


def test_cli_rejects_until_before_start() -> None:
    result = runner.invoke(_app(), ["simulate", "--start", "2024-04-29", "--until", "2024-04-28", "--out", "-"])
    assert result.exit_code == 2
    assert "--until" in _said(result.stderr) and "expected a time after the start" in _said(result.stderr)


def test_cli_rejects_a_bad_start() -> None:
    result = runner.invoke(_app(), ["simulate", "--events", "5", "--start", "next tuesday", "--out", "-"])
    assert result.exit_code == 2
    assert "expected an ISO-8601 time" in _said(result.stderr) and "'next tuesday'" in _said(result.stderr)


def test_cli_rejects_rate_with_as_fast_as_possible() -> None:
    result = runner.invoke(_app(), ["simulate", "--rate", "10", "--as-fast-as-possible", "--out", "-"])
    assert result.exit_code == 2
    assert "either --rate or --as-fast-as-possible" in _said(result.stderr)


def test_cli_rejects_a_missing_directory(tmp_path: Path) -> None:
    result = runner.invoke(_app(), ["simulate", "--out", str(tmp_path / "nope" / "x.jsonl")])
    assert result.exit_code == 2
    assert "existing directory" in _said(result.stderr)


def test_cli_paces_to_the_rate() -> None:
    began = time.monotonic()
    result = runner.invoke(_app(), ["simulate", "-n", "30", "--rate", "100", "--start", str(START), "--out", "-"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - began >= 0.28  # 30 events at 100/s: the last one leaves after 0.3 s


def test_cli_never_writes_events_receivers_would_refuse_as_future(tmp_path: Path) -> None:
    # From now, unpaced: the simulated hours run ahead of the clock; it stops at the allowed skew.
    out = tmp_path / "now.jsonl"
    result = runner.invoke(_app(), ["simulate", "-n", "20000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    times = [json.loads(line)["event_time"] for line in out.read_text().splitlines()]
    assert 0 < len(times) < 20000 and max(times) < time.time() * 1000 + 3_600_000
    assert "too far ahead" in _said(result.stderr)
    # Paced from now: a live stream, no event before its time.
    paced = runner.invoke(_app(), ["simulate", "-n", "3", "--rate", "1000", "--out", "-"])
    assert paced.exit_code == 0, paced.output
    last = max(json.loads(line)["event_time"] for line in paced.stdout.splitlines())
    assert last <= time.time() * 1000  # held until its time: the third event is seconds after the first


def test_cli_fails_clearly_when_kafka_is_unreachable() -> None:
    # Port 1 refuses connections: the up-front check gives up after its 5 s timeout.
    result = runner.invoke(_app(), ["simulate", "-n", "10", "--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "did not answer" in _said(result.stderr) and "127.0.0.1:1" in _said(result.stderr)


class _FakeAdmin:
    ensured: ClassVar[list[TopicSpec]] = []

    def __init__(self, settings: KafkaSettings, *, timeout_s: float) -> None:
        self.settings = settings

    def ensure(self, specs: list[TopicSpec]) -> list[str]:
        _FakeAdmin.ensured = specs
        return [s.name for s in specs]


class _FakeProducer:
    """Stands in for `EventProducer` to check the command's wiring; real Kafka is for integration tests."""

    sent: ClassVar[list[tuple[str, Event]]] = []
    fail_on_flush = False

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.delivered = 0
        _FakeProducer.sent = []

    def send(self, topic: str, event: Event) -> None:
        self.sent.append((topic, event))
        self.delivered += 1

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 30.0) -> None:
        if self.fail_on_flush:
            raise ProduceError(3, ["rides.trips: Local: Message timed out"])


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[_FakeProducer]:
    monkeypatch.setattr(simulate_cmd, "TopicAdmin", _FakeAdmin)
    monkeypatch.setattr(simulate_cmd, "EventProducer", _FakeProducer)
    monkeypatch.setattr(_FakeProducer, "fail_on_flush", False)
    return _FakeProducer


def test_cli_produces_every_event_to_its_topic(fake_kafka: type[_FakeProducer]) -> None:
    args = ["simulate", "-n", "500", "--start", "2024-04-29T00:00:00", "--partitions", "2", "-b", "kafka:9092"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert [(s.name, s.partitions, s.retention_ms) for s in _FakeAdmin.ensured] == [
        (TRIPS_TOPIC, 2, -1),
        (DRIVER_PINGS_TOPIC, 2, -1),
    ]
    assert [e for _, e in fake_kafka.sent] == list(simulate(500, seed=42, start_ms=START))
    assert all(topic == topic_for(e) for topic, e in fake_kafka.sent)
    said = _said(result.stderr)
    assert "Kafka at kafka:9092" in said and "500 events" in said and "acknowledged by Kafka 500" in said


def test_cli_exits_1_when_records_are_not_delivered(fake_kafka: type[_FakeProducer]) -> None:
    fake_kafka.fail_on_flush = True
    result = runner.invoke(_app(), ["simulate", "-n", "50", "--start", str(START)])
    assert result.exit_code == 1
    assert "3 record(s) were not delivered" in _said(result.stderr) and "after queueing 50 events" in _said(
        result.stderr
    )


def test_an_injected_drift_slows_one_city_from_its_moment_on_and_nothing_before() -> None:
    from streams.sim.drift import Drift
    from streams.sim.generator import SimConfig

    start, after = 1_767_225_600_000, 3_600_000
    plain = list(simulate(60_000, 5, start))
    drifted = list(simulate(60_000, 5, start, config=SimConfig(drifts=(Drift("sao", 0.7, after),))))
    cut = start + after
    assert [e for e in plain if e.event_time < cut] == [e for e in drifted if e.event_time < cut]

    def seconds_per_km(events: list[Event], city: str) -> float:
        trips = [e for e in events if isinstance(e, TripCompleted) and e.city == city and e.requested_at >= cut]
        assert len(trips) > 500
        return sum(t.eta_s / t.distance_km for t in trips) / len(trips)

    assert seconds_per_km(drifted, "sao") > 1.15 * seconds_per_km(plain, "sao")  # the drive part grows by 1/0.7
    for city in ("nyc", "lon", "rio"):
        assert seconds_per_km(drifted, city) == pytest.approx(seconds_per_km(plain, city), rel=0.03)


def test_a_bad_drift_is_refused_with_what_was_expected() -> None:
    ok = runner.invoke(_app(), ["simulate", "-n", "20", "--out", "-", "--drift", "city=sao,speed=0.7,after=10m"])
    assert ok.exit_code == 0, ok.output
    for drift, expected in (
        ("city=atlantis,speed=0.7", "no city 'atlantis'"),
        ("city=sao", "speed missing"),
        ("city=sao,speed=fast", "speed must be a number"),
        ("city=sao,speed=0", "speed must be a factor in (0, 10]"),
        ("city=sao,speed=0.7,after=soon", "expected a duration"),
        ("town=sao,speed=0.7", "expected city=<city>,speed=<factor>"),
    ):
        refused = runner.invoke(_app(), ["simulate", "-n", "20", "--out", "-", "--drift", drift])
        assert refused.exit_code == 2 and expected in _said(refused.output), (drift, refused.output)
