"""`affresco simulate` into the real broker: Kafka holds exactly what the simulator generates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from affresco.cli import app
from streams.consumer import header
from streams.events.registry import any_event_adapter
from streams.settings import KafkaSettings
from streams.sim import DRIVER_PINGS_TOPIC, TRIPS_TOPIC, topic_for
from tests.integration.helpers import read_all

pytestmark = pytest.mark.integration


def test_simulated_events_land_in_their_topics_exactly_once(
    kafka_settings: KafkaSettings, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    # A fresh prefix keeps the test's events out of the demo's rides.* topics.
    prefix = unique("sim") + "."
    topics = (prefix + TRIPS_TOPIC, prefix + DRIVER_PINGS_TOPIC)
    runner = CliRunner(env={"COLUMNS": "200"})
    args = ["simulate", "--events", "3000", "--seed", "11", "--start", "2025-03-03T00:00:00Z"]
    out = tmp_path / "events.jsonl"
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    expected = Counter(
        any_event_adapter.validate_json(line).model_dump_json() for line in out.read_bytes().splitlines()
    )
    assert sum(expected.values()) == 3000

    result = runner.invoke(app, [*args, "--topic-prefix", prefix])
    assert result.exit_code == 0, result.output

    got: Counter[str] = Counter()
    for topic in topics:
        for m in read_all(topic, kafka_settings):
            event = any_event_adapter.validate_json(m.value() or b"")
            assert topic_for(event, prefix) == topic
            assert header(m, "event_type") == event.type_name().encode()
            assert m.key() == event.key().encode()
            assert m.timestamp()[1] == event.event_time
            got[event.model_dump_json()] += 1
    assert got == expected
