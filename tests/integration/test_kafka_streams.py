"""The event backbone on a real Kafka broker: topics, produce, consume with commits, replay, DLQ."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Message

from streams.admin import TopicAdmin, TopicSpec
from streams.codec import EventDecoder
from streams.consumer import EventConsumer, header
from streams.dlq import DeadLetterWriter
from streams.events import DeadLetter, DriverPing
from streams.ingest import ingest_lines
from streams.producer import EventProducer
from streams.replay import ReplayRange, plan_replay, replay
from streams.routing import Accepted, RecordRouter, Skipped
from streams.settings import KafkaSettings
from tests.integration.helpers import read_all, spec

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def ping(i: int, t: int) -> DriverPing:
    return DriverPing(
        event_time=t, driver_id=f"d-{i % 7}", country="US", city="nyc", zone=f"z{i % 3}", status="available"
    )


def test_topic_creation_is_idempotent_and_described(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    admin = TopicAdmin(kafka_settings)
    name = unique("topics")
    s = TopicSpec(name, partitions=3, retention_ms=-1)
    assert admin.ensure([s]) == [name]
    assert admin.ensure([s]) == []
    assert name in admin.names()
    desc = admin.describe(name)
    assert [p.partition for p in desc.partitions] == [0, 1, 2]
    assert desc.config["retention.ms"] == "-1"
    compacted = unique("compacted")
    admin.ensure([TopicSpec(compacted, partitions=1, compacted=True)])
    assert admin.describe(compacted).config["cleanup.policy"] == "compact"


def test_events_keep_key_headers_and_event_time(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    topic = unique("pings")
    TopicAdmin(kafka_settings).ensure([spec(topic)])
    events = [ping(i, T0 + i * 1000) for i in range(50)]
    with EventProducer(kafka_settings) as producer:
        producer.send_many(topic, events)
    msgs = read_all(topic, kafka_settings)
    assert len(msgs) == 50
    by_time = {m.timestamp()[1]: m for m in msgs}
    for e in events:
        m = by_time[e.event_time]
        assert m.key() == e.key().encode()
        assert header(m, "event_type") == b"driver_ping"
        assert header(m, "schema_version") == b"1"
        assert DriverPing.model_validate_json(m.value() or b"") == e
    # One driver's events share a partition, so they stay ordered.
    parts_per_driver: dict[bytes | None, set[int | None]] = {}
    for m in msgs:
        parts_per_driver.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in parts_per_driver.values())


def test_consumer_commits_explicitly(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    topic, group = unique("commits"), unique("group")
    TopicAdmin(kafka_settings).ensure([spec(topic, partitions=1)])
    with EventProducer(kafka_settings) as producer:
        producer.send_many(topic, [ping(i, T0 + i) for i in range(20)])

    def drain(consumer: EventConsumer, want: int) -> list[int]:
        got: list[int] = []
        for _ in range(30):
            batch = consumer.poll(1000, 1.0)
            got += [m.offset() or 0 for m in batch]
            if len(got) >= want:
                break
        return got

    with EventConsumer([topic], group, kafka_settings) as c:
        assert len(drain(c, 20)) == 20
    with EventConsumer([topic], group, kafka_settings) as c:
        # Nothing was committed: everything comes back. Now commit only the first 10 records.
        msgs: list[Message] = []
        for _ in range(30):
            msgs += c.poll(1000, 1.0)
            if len(msgs) >= 20:
                break
        assert len(msgs) == 20
        c.commit([m for m in msgs if (m.offset() or 0) < 10])
    with EventConsumer([topic], group, kafka_settings) as c:
        assert sorted(drain(c, 10)) == list(range(10, 20))


def test_replay_between_timestamps_and_offsets(kafka_settings: KafkaSettings, unique: Callable[[str], str]) -> None:
    topic = unique("replay")
    TopicAdmin(kafka_settings).ensure([spec(topic)])
    minute = 60_000
    events = [ping(i, T0 + i * minute) for i in range(120)]  # two hours, one per minute
    with EventProducer(kafka_settings) as producer:
        producer.send_many(topic, events)

    def times(rng: ReplayRange) -> list[int]:
        return sorted(m.timestamp()[1] for b in replay(topic, rng, kafka_settings) for m in b)

    start, end = T0 + 30 * minute, T0 + 90 * minute
    assert times(ReplayRange(start_ms=start, end_ms=end)) == [
        e.event_time for e in events if start <= e.event_time < end
    ]
    assert times(ReplayRange(start_ms=T0 + 200 * minute)) == []  # after the last record: empty, not a hang
    assert len(times(ReplayRange())) == 120
    # Offsets: the first 5 records of each partition.
    plan = plan_replay(topic, ReplayRange(start_offset=0, end_offset=5), kafka_settings)
    assert all(r.size == min(5, r.end) for r in plan)
    assert len(times(ReplayRange(start_offset=0, end_offset=5))) == sum(r.size for r in plan)
    one = times(ReplayRange(start_offset=2, end_offset=4, partitions=(0,)))
    assert len(one) == 2


def test_bad_lines_reach_the_dlq_and_every_line_is_accounted_for(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("ingest")
    TopicAdmin(kafka_settings).ensure([spec(topic)])
    good = [ping(i, T0 + i).model_dump_json().encode() for i in range(100)]
    bad = {
        "malformed_json": b'{"event_time": 1, "driver_id": ',
        "validation_error": orjson.dumps({**orjson.loads(good[0]), "event_time": "yesterday"}),
        "oversized": orjson.dumps({**orjson.loads(good[0]), "zone": "z" * 1_100_000}),
    }
    missing = orjson.dumps({k: v for k, v in orjson.loads(good[1]).items() if k != "status"})
    lines = [*good[:50], bad["malformed_json"], b"", bad["validation_error"], missing, *good[50:], bad["oversized"]]
    with EventProducer(kafka_settings) as producer:
        dlq = DeadLetterWriter(producer)
        report = ingest_lines(
            [line + b"\n" for line in lines],
            topic,
            producer,
            dlq,
            decoder=EventDecoder(DriverPing),
            source_name="t.jsonl",
        )
    assert report.balanced
    assert (report.lines, report.produced, report.dead_lettered, report.blank) == (105, 100, 4, 1)
    assert report.reasons == {"malformed_json": 1, "validation_error": 2, "oversized": 1}

    produced = read_all(topic, kafka_settings)
    assert sorted(m.value() or b"" for m in produced) == sorted(good)  # byte-for-byte as sent
    letters = [
        DeadLetter.model_validate_json(m.value() or b"") for m in read_all(dlq.topics.dlq(topic), kafka_settings)
    ]
    assert sorted(d.reason for d in letters) == ["malformed_json", "oversized", "validation_error", "validation_error"]
    for d in letters:
        assert d.source_topic == topic
        assert d.error.startswith("t.jsonl line ")
        original = base64.b64decode(d.original_value_b64)
        if d.reason == "oversized":
            assert d.truncated and d.original_size == len(bad["oversized"])
            assert bad["oversized"].startswith(original)
        else:
            assert original in (bad["malformed_json"], bad["validation_error"], missing)
    assert any("status: Field required" in d.error for d in letters)


def test_consumed_records_are_routed_by_header_then_body(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("routing")
    TopicAdmin(kafka_settings).ensure([spec(topic, partitions=1)])
    body = ping(1, T0).model_dump_json().encode()
    untyped = orjson.dumps({k: v for k, v in orjson.loads(body).items() if k != "event_type"})
    trip = b'{"event_type": "trip_requested", "event_time": 1767225600000}'
    cases: list[tuple[bytes, list[tuple[str, bytes | None]] | None, str]] = [
        (body, [("event_type", b"driver_ping"), ("schema_version", b"1")], "accepted"),
        (body, None, "accepted"),  # no header: the body's event_type
        (body, [("event_type", None)], "accepted"),  # a null header is no header
        (untyped, None, "unknown_event_type"),
        (body, [("event_type", b"Driver_Ping")], "unknown_event_type"),
        (body, [("event_type", b"driver_ping"), ("schema_version", b"2")], "unknown_schema_version"),
        (body, [("event_type", b"trip_requested")], "skipped"),
        (trip, None, "skipped"),
        (b"NaN", [("event_type", b"driver_ping")], "malformed_json"),
    ]
    with EventProducer(kafka_settings) as producer:
        for value, headers, _ in cases:
            producer.send_raw(topic, value, key=b"k", headers=headers)
    router = RecordRouter([DriverPing], max_bytes=kafka_settings.max_message_bytes, max_future_ms=3_600_000)
    msgs = sorted(read_all(topic, kafka_settings), key=lambda m: m.offset() or 0)
    now = int(time.time() * 1000)
    verdicts = []
    for m in msgs:
        r = router.route(m, now)
        verdicts.append("accepted" if isinstance(r, Accepted) else "skipped" if isinstance(r, Skipped) else r.reason)
    assert verdicts == [c[2] for c in cases]
