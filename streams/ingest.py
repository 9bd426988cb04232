"""Produce JSON lines to a topic, validating each against an event type; rejects go to the DLQ.

Every input line is accounted for: `lines == produced + dead_lettered + blank` (+ `undelivered`,
lines whose dead letter the broker refused too: zero unless the DLQ itself fails). A line the
broker refuses (it refuses a whole batch for one bad record) is sent again alone; refused again, it
goes to the DLQ as `output_rejected` with the broker's error, so good lines are never lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import orjson

from streams.codec import EventDecoder
from streams.dlq import DeadLetterWriter
from streams.events.fields import INT63_MAX
from streams.events.registry import EVENT_TYPES
from streams.producer import EventProducer, event_headers

__all__ = ["IngestReport", "ingest_lines"]


@dataclass
class IngestReport:
    lines: int = 0
    blank: int = 0
    produced: int = 0
    dead_lettered: int = 0
    undelivered: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    # Deliveries that failed for good (dead letters the broker refused): the run did not succeed.
    errors: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.lines == self.produced + self.dead_lettered + self.blank + self.undelivered


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
    flush_timeout: float = 30.0,
) -> IngestReport:
    """Validate and produce every line, flush, and return the accounting of what was delivered.

    With a `decoder`, lines are validated as events and produced byte-for-byte as they arrived, keyed
    by the event's key, with `event_type`/`schema_version` headers and the event time as timestamp;
    event times too far ahead are refused by the decoder (`future_event`) before producing.
    Without one, lines only need to be JSON objects; `key_field` picks the key.

    While it runs, the producer's delivery failures are collected (not raised) and treated as this
    ingest's own: it expects to be the producer's only sender meanwhile.
    """
    report = IngestReport()
    collecting = producer.collect_failures
    producer.collect_failures = True
    try:
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
        _settle(topic, producer, dlq, source_name, report, decoder, flush_timeout)
    finally:
        producer.collect_failures = collecting
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
        name = cls.type_name()
        producer.send_raw(
            topic,
            rows[i],
            key=event.key(),
            headers=event_headers(cls),
            timestamp_ms=event.event_time,
            context=(numbers[i], name),
        )
        report.by_type[name] += 1
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
        name = etype if isinstance(etype, str) else "untyped"
        producer.send_raw(
            topic,
            raw,
            key=None if key is None else str(key),
            headers=event_headers(cls) if cls else None,
            # Not a bool (an int too), nor beyond Kafka's int64 timestamps (librdkafka would raise).
            timestamp_ms=ts if type(ts) is int and 0 <= ts <= INT63_MAX else None,
            context=(n, name),
        )
        report.by_type[name] += 1
        report.produced += 1


def _settle(
    topic: str,
    producer: EventProducer,
    dlq: DeadLetterWriter,
    source_name: str,
    report: IngestReport,
    decoder: EventDecoder | None,
    timeout: float,
) -> None:
    """Flush; lines the broker refused get a second chance alone, then the DLQ (`output_rejected`)."""
    producer.flush(timeout)
    failed = producer.take_failures()
    lines = [f for f in failed if f.topic == topic]
    others = [f for f in failed if f.topic != topic]
    for f in producer.resend_alone(lines, timeout) if lines else []:
        line, name = f.context if isinstance(f.context, tuple) else ("?", "untyped")
        report.produced -= 1
        report.by_type[name] -= 1
        if not report.by_type[name]:
            del report.by_type[name]
        dlq.send(
            source_topic=topic,
            value=f.value,
            key=f.key,
            reason="output_rejected",
            error=f"{source_name} line {line}: the broker refused the record, also when sent alone: {f.error}",
            expected_type=decoder.expected if decoder else None,
            step="produce",
        )
        report.reasons["output_rejected"] += 1
        report.dead_lettered += 1
    producer.flush(timeout)
    others += producer.take_failures()
    for f in producer.resend_alone(others, timeout) if others else []:
        # A dead letter (or someone else's record) the broker refused even alone.
        report.errors.append(f"{f.topic}: {f.error}")
        if f.topic == dlq.topics.dlq(topic):
            report.dead_lettered -= 1
            report.undelivered += 1


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
