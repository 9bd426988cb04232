"""The CLI against the real broker: topics, produce (with DLQ and exit code), tail."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from affresco.cli import app
from streams.events import DeadLetter
from streams.settings import KafkaSettings
from streams.topics import Topics
from tests.integration.helpers import read_all

pytestmark = pytest.mark.integration

runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})

PING = {"event_time": 1_767_225_600_000, "driver_id": "d-1", "country": "US", "city": "nyc", "zone": "z1"}


def lines(*rows: object) -> str:
    return "\n".join(r if isinstance(r, str) else orjson.dumps(r).decode() for r in rows) + "\n"


def test_topics_create_list_describe(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    name = unique("cli")
    first = runner.invoke(app, ["topics", "create", name, "--partitions", "2", "--retention-ms", "-1"])
    assert first.exit_code == 0, first.output
    assert "created" in first.output
    again = runner.invoke(app, ["topics", "create", name, "--partitions", "2"])
    assert again.exit_code == 0 and "exists already" in again.output
    assert name in runner.invoke(app, ["topics", "list"]).output.split()
    desc = json.loads(runner.invoke(app, ["topics", "describe", name, "--json"]).output)
    assert len(desc["partitions"]) == 2 and desc["config"]["retention.ms"] == "-1"
    bad = runner.invoke(app, ["topics", "create", name, "--config", "nonsense"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output


def test_produce_validates_and_dead_letters(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    topic = unique("produce")
    stdin = lines(
        {**PING, "status": "available"},
        {**PING, "status": "on_trip", "event_time": 1_767_225_601_000},
        "{broken json",
        {**PING, "status": "flying"},
        {**PING},
    )
    result = runner.invoke(app, ["produce", topic, "--type", "driver_ping", "--json"], input=stdin)
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["lines"] == 5 and summary["produced"] == 2 and summary["dead_lettered"] == 3
    assert summary["reasons"] == {"malformed_json": 1, "validation_error": 2}
    letters = [DeadLetter.model_validate_json(m.value() or b"") for m in read_all(Topics().dlq(topic), kafka_settings)]
    assert len(letters) == 3
    assert {d.error.split(":")[0] for d in letters} == {"stdin line 3", "stdin line 4", "stdin line 5"}

    tailed = runner.invoke(app, ["tail", topic, "--from-beginning", "--max", "2", "--meta"])
    assert tailed.exit_code == 0, tailed.output
    records = [json.loads(line) for line in tailed.stdout.strip().splitlines()]
    assert sorted(r["value"]["status"] for r in records) == ["available", "on_trip"]
    assert all(r["key"] == "d-1" and r["headers"]["event_type"] == "driver_ping" for r in records)


def test_produce_all_good_exits_zero_and_auto_type(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    topic = unique("auto")
    stdin = lines({**PING, "status": "available", "event_type": "driver_ping"}, {"event_type": "teleport"})
    result = runner.invoke(app, ["produce", topic, "--type", "auto", "--json"], input=stdin)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["reasons"] == {"unknown_event_type": 1} and result.exit_code == 1
    ok = runner.invoke(app, ["produce", topic, "--type", "DriverPing"], input=lines({**PING, "status": "offline"}))
    assert ok.exit_code == 0, ok.output
    since = runner.invoke(app, ["tail", topic, "--since", "2026-01-01T00:00:00Z", "--max", "2"])
    assert since.exit_code == 0, since.output
    # Values are produced byte-for-byte as given: the second line had no event_type field.
    assert [json.loads(line)["status"] for line in since.stdout.splitlines()] == ["available", "offline"]


def test_bad_arguments_give_clear_errors(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    unknown = runner.invoke(app, ["produce", unique("x"), "--type", "teleported"], input="{}\n")
    assert unknown.exit_code == 2 and "unknown event type 'teleported'" in unknown.output
    since = runner.invoke(app, ["tail", "whatever", "--since", "last tuesday"])
    assert since.exit_code == 2 and "expected an ISO-8601 time" in since.output
    missing = runner.invoke(app, ["tail", unique("nope"), "--max", "1"])
    assert missing.exit_code == 1 and "not found" in missing.output
    nofile = runner.invoke(app, ["produce", unique("x"), "--file", "/nonexistent.jsonl"])
    assert nofile.exit_code == 2 and "no such file" in nofile.output


def test_produce_accounts_for_every_line_of_a_mixed_file(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique("mixed")
    now = int(time.time() * 1000)
    good = [orjson.dumps({**PING, "status": "available", "event_time": now - 60_000 * i}) for i in range(6)]
    integral = orjson.dumps({**PING, "status": "offline"}).replace(
        b'"event_time":1767225600000', b'"event_time":1767225600000.0'
    )
    bad = [
        orjson.dumps({**PING, "status": "available", "event_time": now + 2 * 3_600_000}),  # 2 h ahead
        orjson.dumps({**PING, "status": "available"}).replace(b"1767225600000", b"NaN"),
        orjson.dumps({**PING, "status": "available"}).replace(b"1767225600000", b"1e400"),
    ]
    assert b"1767225600000.0" in integral
    rows = [good[0], bad[0], good[1], b"", bad[1], good[2], integral, good[3], bad[2], good[4], good[5]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    result = runner.invoke(app, ["produce", topic, "--type", "driver_ping", "--file", str(path), "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["lines"], summary["produced"], summary["dead_lettered"], summary["blank"]) == (11, 7, 3, 1)
    assert summary["reasons"] == {"future_event": 1, "malformed_json": 2}
    # Every good line is delivered, byte for byte (the integral float too: JSON Schema calls it an integer).
    assert sorted(m.value() or b"" for m in read_all(topic, kafka_settings)) == sorted([*good, integral])
    letters = [DeadLetter.model_validate_json(m.value() or b"") for m in read_all(Topics().dlq(topic), kafka_settings)]
    by_line = {d.error.split(":")[0]: d.reason for d in letters}
    assert by_line == {
        f"{path} line 2": "future_event",
        f"{path} line 5": "malformed_json",
        f"{path} line 9": "malformed_json",
    }


def test_produce_without_a_type_dead_letters_what_the_broker_refuses(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("refused")
    now = int(time.time() * 1000)
    good = [{"event_time": now - i, "n": i} for i in range(10)]
    ahead = {"event_time": now + 2 * 3_600_000, "n": "ahead"}
    # Event times that are no record timestamp (a bool, beyond int64) leave it to the producer.
    odd = ['{"event_time": true, "n": 10}', '{"event_time": 18446744073709551615, "n": 11}']
    result = runner.invoke(app, ["produce", topic, "--json"], input=lines(*good[:5], ahead, *good[5:], *odd))
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["lines"], summary["produced"], summary["dead_lettered"]) == (13, 12, 1)
    assert summary["reasons"] == {"output_rejected": 1}
    assert sorted(orjson.loads(m.value() or b"")["n"] for m in read_all(topic, kafka_settings)) == list(range(12))
    [letter] = [DeadLetter.model_validate_json(m.value() or b"") for m in read_all(Topics().dlq(topic), kafka_settings)]
    assert letter.reason == "output_rejected" and "stdin line 6" in letter.error and "Invalid timestamp" in letter.error


def test_auto_type_follows_the_routing_rule(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    topic = unique("autorule")
    ping = {**PING, "status": "available"}
    stdin = lines(
        {**ping, "event_type": "driver_ping"},
        {**ping, "event_type": "Driver_Ping"},  # exact names only
        {**ping, "event_type": ""},
        ping,  # no event_type: no type
        {**ping, "event_type": "trip_requested"},  # a known type the body does not match
    )
    result = runner.invoke(app, ["produce", topic, "--type", "auto", "--json"], input=stdin)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["produced"] == 1 and summary["by_type"] == {"driver_ping": 1}
    assert summary["reasons"] == {"unknown_event_type": 3, "validation_error": 1}
