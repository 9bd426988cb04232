"""Delivery failures on the real broker: a refused batch never takes good records down with it."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import orjson
import pytest

from streams.admin import TopicAdmin
from streams.codec import EventDecoder
from streams.dlq import DeadLetterWriter
from streams.events import DeadLetter, DriverPing
from streams.ingest import ingest_lines
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from tests.integration.helpers import read_all, spec

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def ping(i: int, t: int) -> DriverPing:
    return DriverPing(event_time=t, driver_id=f"d-{i}", country="US", city="nyc", zone="z1", status="available")


def test_a_refused_batch_gets_a_second_chance_record_by_record(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("refused")
    TopicAdmin(kafka_settings).ensure([spec(topic, partitions=1)])
    now = int(time.time() * 1000)
    good = [ping(i, now - 60_000 + i).model_dump_json().encode() for i in range(20)]
    # A long linger puts every record in one batch, which the broker refuses whole.
    producer = EventProducer(kafka_settings, collect_failures=True, linger_ms=300)
    for i, value in enumerate(good[:10]):
        producer.send_raw(topic, value, key=f"d-{i}", timestamp_ms=now, context=i)
    producer.send_raw(topic, b'{"late": false}', key="bad", timestamp_ms=now + 2 * HOUR, context="bad")
    for i, value in enumerate(good[10:], start=10):
        producer.send_raw(topic, value, key=f"d-{i}", timestamp_ms=now, context=i)
    producer.flush()  # collected, not raised
    failed = producer.take_failures()
    assert "bad" in [f.context for f in failed]
    assert len(failed) > 1, "the broker refused the bad record alone: good ones were not at risk"
    assert all("Invalid timestamp" in f.error for f in failed)
    bad = next(f for f in failed if f.context == "bad")
    assert (bad.topic, bad.key, bad.value, bad.timestamp_ms) == (topic, b"bad", b'{"late": false}', now + 2 * HOUR)

    again = producer.resend_alone(failed)
    assert [f.context for f in again] == ["bad"]
    assert producer.take_failures() == []
    producer.flush()
    assert sorted(m.value() or b"" for m in read_all(topic, kafka_settings)) == sorted(good)
    assert producer.delivered == 20


def test_ingest_dead_letters_what_the_broker_refuses_and_delivers_the_rest(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("untyped")
    TopicAdmin(kafka_settings).ensure([spec(topic, partitions=2)])
    now = int(time.time() * 1000)
    good = [orjson.dumps({"event_time": now - i, "n": i}) for i in range(30)]
    future = orjson.dumps({"event_time": now + 2 * HOUR, "n": "future"})
    lines = [*good[:15], future, *good[15:]]
    # No decoder: lines only need to be JSON objects, so the broker is the one that refuses.
    producer = EventProducer(kafka_settings, linger_ms=200)
    dlq = DeadLetterWriter(producer)
    report = ingest_lines([line + b"\n" for line in lines], topic, producer, dlq, source_name="u.jsonl")
    assert report.balanced and report.errors == []
    assert (report.lines, report.produced, report.dead_lettered) == (31, 30, 1)
    assert report.reasons == {"output_rejected": 1} and report.by_type == {"untyped": 30}
    producer.flush()  # nothing left to raise: ingest handled its failures
    assert sorted(m.value() or b"" for m in read_all(topic, kafka_settings)) == sorted(good)
    [letter] = [
        DeadLetter.model_validate_json(m.value() or b"") for m in read_all(dlq.topics.dlq(topic), kafka_settings)
    ]
    assert letter.reason == "output_rejected" and letter.step == "produce"
    assert letter.error.startswith("u.jsonl line 16: the broker refused the record, also when sent alone: ")
    assert "Invalid timestamp" in letter.error
    assert base64.b64decode(letter.original_value_b64) == future


def test_validated_ingest_refuses_future_events_before_producing(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("future")
    TopicAdmin(kafka_settings).ensure([spec(topic)])
    now = int(time.time() * 1000)
    good = [ping(i, now - 1000 * i).model_dump_json().encode() for i in range(10)]
    ahead = ping(99, now + 2 * HOUR).model_dump_json().encode()
    with EventProducer(kafka_settings) as producer:
        dlq = DeadLetterWriter(producer)
        report = ingest_lines(
            [*good[:5], ahead, *good[5:]], topic, producer, dlq, decoder=EventDecoder(DriverPing), source_name="f"
        )
    assert (report.produced, report.dead_lettered, dict(report.reasons)) == (10, 1, {"future_event": 1})
    assert sorted(m.value() or b"" for m in read_all(topic, kafka_settings)) == sorted(good)
    [letter] = [
        DeadLetter.model_validate_json(m.value() or b"") for m in read_all(dlq.topics.dlq(topic), kafka_settings)
    ]
    assert letter.reason == "future_event" and letter.expected_type == "driver_ping"
    assert letter.error.startswith("f line 6: event_time ") and "ahead of the receiver's clock" in letter.error
