"""Dead letters as data (no broker: the writer's producer and admin are recording doubles)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from streams.admin import TopicSpec
from streams.dlq import MAX_ORIGINAL_BYTES, DeadLetterWriter, decode_original
from streams.events import DeadLetter
from streams.events.platform import DEAD_LETTER_REASONS
from streams.producer import EventProducer
from streams.settings import KafkaSettings


class RecordingProducer:
    settings = KafkaSettings()

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_raw(self, topic: str, value: bytes, **kw: Any) -> None:
        self.sent.append({"topic": topic, "value": value, **kw})


class RecordingAdmin:
    def __init__(self) -> None:
        self.ensured: list[str] = []

    def ensure(self, specs: list[TopicSpec]) -> list[str]:
        self.ensured += [s.name for s in specs]
        return [s.name for s in specs]


def writer() -> tuple[DeadLetterWriter, RecordingProducer, RecordingAdmin]:
    producer, admin = RecordingProducer(), RecordingAdmin()
    return DeadLetterWriter(producer, admin), producer, admin  # type: ignore[arg-type]


def test_a_dead_letter_names_the_group_and_step_and_keeps_the_original_key() -> None:
    dlq, producer, admin = writer()
    letter = dlq.send(
        source_topic="rides.trips",
        value=b'{"event_time": 1}',
        reason="processing_error",
        error="aggregate: boom",
        key=b"r-1",
        partition=3,
        offset=42,
        expected_type="trip_requested",
        group="zone_demand:v1",
        step="aggregate",
    )
    assert (letter.group, letter.step, letter.source_partition, letter.source_offset) == (
        "zone_demand:v1", "aggregate", 3, 42,
    )  # fmt: skip
    [record] = producer.sent
    # The DLQ record's Kafka key is the original record's key, not the source topic.
    assert record["topic"] == "affresco.dlq.rides.trips" and record["key"] == b"r-1"
    assert DeadLetter.model_validate_json(record["value"]) == letter
    assert decode_original(letter) == b'{"event_time": 1}'
    assert admin.ensured == ["affresco.dlq.rides.trips"]
    assert dlq.counts == {"processing_error": 1}


def test_every_reason_is_a_valid_dead_letter_and_others_are_refused() -> None:
    dlq, _, _ = writer()
    for reason in DEAD_LETTER_REASONS:
        assert dlq.send(source_topic="t", value=b"x", reason=reason, error="e").reason == reason
    assert {"future_event", "unknown_schema_version", "output_rejected"} <= set(DEAD_LETTER_REASONS)
    with pytest.raises(ValueError, match="reason"):
        dlq.send(source_topic="t", value=b"x", reason="bored", error="e")


def test_large_originals_are_truncated_but_measured() -> None:
    dlq, producer, _ = writer()
    big = b"v" * (MAX_ORIGINAL_BYTES + 10)
    letter = dlq.send(source_topic="t", value=big, reason="oversized", error="e", key=b"k" * (MAX_ORIGINAL_BYTES + 1))
    assert letter.truncated and letter.original_size == len(big)
    assert decode_original(letter) == big[:MAX_ORIGINAL_BYTES]
    assert len(base64.b64decode(letter.original_key_b64 or "")) == MAX_ORIGINAL_BYTES
    assert producer.sent[0]["key"] == b"k" * (MAX_ORIGINAL_BYTES + 1)  # the record keeps the whole key


def test_the_future_skew_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().max_future_ms == 3_600_000  # the broker's default
    monkeypatch.setenv("AFFRESCO_KAFKA_MAX_FUTURE_MS", "60000")
    assert KafkaSettings().max_future_ms == 60_000
    monkeypatch.setenv("AFFRESCO_KAFKA_MAX_FUTURE_MS", "-1")
    with pytest.raises(ValueError, match="max_future_ms"):
        KafkaSettings()


def test_resending_needs_a_producer_that_collects_failures() -> None:
    producer = EventProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"))  # never connects here
    with pytest.raises(ValueError, match="collect_failures=True"):
        producer.resend_alone([])
    collecting = EventProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), collect_failures=True)
    assert collecting.take_failures() == [] and collecting.resend_alone([]) == []
