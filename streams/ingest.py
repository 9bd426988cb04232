"""Produce JSON lines to a topic, validating each against an event type; rejects go to the DLQ.

Every input line is accounted for: `lines == produced + dead_lettered + blank`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import orjson

from streams.codec import EventDecoder
from streams.dlq import DeadLetterWriter
from streams.events.registry import EVENT_TYPES
from streams.producer import EventProducer, event_headers

__all__ = ["IngestReport", "ingest_lines"]


@dataclass
class IngestReport:
    lines: int = 0
    blank: int = 0
    produced: int = 0
    dead_lettered: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)

    @property
    def balanced(self) -> bool:
        return self.lines == self.produced + self.dead_lettered + self.blank


def _batches(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    it = iter(lines)
    while batch := list(islice(it, size)):
        yield batch


def ingest_lines(
    lines: Iterable[bytes],
    topic: str,
    producer: EventProducer,
    dlq: DeadLetterWriter,
    *,
    decoder: EventDecoder | None = None,
    key_field: str | None = None,
    source_name: str = "input",
    batch_size: int = 5000,
) -> IngestReport:
    """Validate and produce every line; returns the accounting. The caller flushes the producer.

    With a `decoder`, lines are validated as events and produced byte-for-byte as they arrived, keyed
    by the event's key, with `event_type`/`schema_version` headers and the event time as timestamp.
    Without one, lines only need to be JSON objects; `key_field` picks the key.
    """
    report = IngestReport()
    line_no = 0
    for batch in _batches(lines, batch_size):
        rows: list[bytes] = []
        numbers: list[int] = []
        for raw in batch:
            line_no += 1
            report.lines += 1
            if not raw.strip():
                report.blank += 1
                continue
            # Only the line terminator is dropped: the record keeps the bytes exactly as they arrived.
            rows.append(raw.rstrip(b"\r\n"))
            numbers.append(line_no)
        if decoder is not None:
            _produce_validated(rows, numbers, topic, producer, dlq, decoder, source_name, report)
        else:
            _produce_untyped(rows, numbers, topic, producer, dlq, key_field, source_name, report)
        producer.poll(0)
    return report


def _produce_validated(
    rows: list[bytes],
    numbers: list[int],
    topic: str,
    producer: EventProducer,
    dlq: DeadLetterWriter,
    decoder: EventDecoder,
    source_name: str,
    report: IngestReport,
) -> None:
    result = decoder.decode(rows)
    for event, i in zip(result.events, result.indices, strict=True):
        cls = type(event)
        producer.send_raw(topic, rows[i], key=event.key(), headers=event_headers(cls), timestamp_ms=event.event_time)
        report.by_type[cls.type_name()] += 1
    report.produced += len(result.events)
    for rej in result.rejected:
        dlq.send(
            source_topic=topic,
            value=rows[rej.index],
            reason=rej.reason,
            error=f"{source_name} line {numbers[rej.index]}: {rej.error}",
            expected_type=decoder.expected,
        )
        report.reasons[rej.reason] += 1
        report.dead_lettered += 1


def _produce_untyped(
    rows: list[bytes],
    numbers: list[int],
    topic: str,
    producer: EventProducer,
    dlq: DeadLetterWriter,
    key_field: str | None,
    source_name: str,
    report: IngestReport,
) -> None:
    limit = producer.settings.max_message_bytes
    for raw, n in zip(rows, numbers, strict=True):
        obj, reason, error = _parse_object(raw, limit)
        if obj is None:
            dlq.send(source_topic=topic, value=raw, reason=reason, error=f"{source_name} line {n}: {error}")
            report.reasons[reason] += 1
            report.dead_lettered += 1
            continue
        key = obj.get(key_field) if key_field else None
        etype = obj.get("event_type")
        cls = EVENT_TYPES.get(etype) if isinstance(etype, str) else None
        ts = obj.get("event_time")
        producer.send_raw(
            topic,
            raw,
            key=None if key is None else str(key),
            headers=event_headers(cls) if cls else None,
            timestamp_ms=ts if isinstance(ts, int) and ts >= 0 else None,
        )
        report.by_type[etype if isinstance(etype, str) else "untyped"] += 1
        report.produced += 1


def _parse_object(raw: bytes, limit: int) -> tuple[dict[str, object] | None, str, str]:
    """The JSON object in `raw`, or None with the DLQ reason and error."""
    if len(raw) > limit:
        return None, "oversized", f"value of {len(raw)} bytes exceeds the limit of {limit}"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, "malformed_json", f"expected a JSON object: {exc}"
    if not isinstance(obj, dict):
        return None, "validation_error", f"expected a JSON object, got {type(obj).__name__}"
    return obj, "", ""
