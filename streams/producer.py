"""An idempotent Kafka producer for events: `acks=all`, delivery errors surfaced, flushed on exit.

A broker refuses a whole record batch when one record is bad (a timestamp too far ahead:
`INVALID_TIMESTAMP`), so good records of the same batch fail with it. With `collect_failures=True`
failed deliveries are kept as `FailedRecord`s instead of raised, and `resend_alone` gives each one
a second chance in a batch of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer

from streams.events.base import Event
from streams.exceptions import ProduceError
from streams.settings import KafkaSettings

__all__ = ["EventProducer", "FailedRecord", "event_headers"]

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
_HEADER_CACHE: dict[type[Event], Headers] = {}


def event_headers(cls: type[Event]) -> Headers:
    """The `event_type` and `schema_version` headers of an event class (cached: they never change)."""
    headers = _HEADER_CACHE.get(cls)
    if headers is None:
        headers = [("event_type", cls.type_name().encode()), ("schema_version", str(cls.schema_version).encode())]
        _HEADER_CACHE[cls] = headers
    return headers


@dataclass(frozen=True)
class FailedRecord:
    """A record the broker did not accept, with everything needed to send it again.

    `context` is what the sender passed with it (e.g. an input line number); `partition` is where
    it was to go (None if it never got one).
    """

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes | None]] | None
    timestamp_ms: int | None
    error: str
    partition: int | None = None
    context: object = None


def _failed(err: KafkaError, msg: Message, timestamp_ms: int | None, context: object) -> FailedRecord:
    # A failed record's own timestamp is not available in its delivery report: the sender's is kept.
    partition = msg.partition()
    return FailedRecord(
        topic=msg.topic() or "",
        key=msg.key(),
        value=msg.value() or b"",
        headers=cast(list[tuple[str, bytes | None]], msg.headers()) or None,  # a list, on a produced record
        timestamp_ms=timestamp_ms,
        error=err.str(),
        partition=partition if partition is not None and partition >= 0 else None,
        context=context,
    )


class EventProducer:
    """Produce events (or already-validated raw bytes) to Kafka.

    Idempotent (`enable.idempotence`, `acks=all`): a retried send never duplicates a record.
    Delivery failures are counted and raised by `flush()`, so nothing is lost silently; with
    `collect_failures=True` they are kept instead (`take_failures()`, `resend_alone()`) and
    `flush()` raises only for records still queued. Use as a context manager to flush on exit::

        with EventProducer(KafkaSettings()) as producer:
            producer.send("rides.trips", event)
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        linger_ms: int | None = None,
        config: dict[str, Any] | None = None,
        collect_failures: bool = False,
    ) -> None:
        self.settings = settings or KafkaSettings()
        self.collect_failures = collect_failures
        self._failures: list[FailedRecord] = []
        conf: dict[str, Any] = {
            **self.settings.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.settings.linger_ms if linger_ms is None else linger_ms,
            "compression.type": self.settings.compression,
            "message.max.bytes": self.settings.max_message_bytes + 64 * 1024,
            "queue.buffering.max.messages": 500_000,
            # A Python callback per delivered record costs ~4 µs; only failures need one.
            "delivery.report.only.error": True,
        }
        conf.update(config or {})
        self._producer = Producer(conf)
        self.queued = 0
        self.failed = 0
        self._unhandled = 0  # failures not collected: `flush()` raises for them
        self._first_errors: list[str] = []

    # -- delivery reports -------------------------------------------------------------------------
    @property
    def delivered(self) -> int:
        """Records acknowledged so far (exact after `flush()`; `failed` counts failed attempts)."""
        return self.queued - self.failed - len(self._producer)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._on_delivery_of(None, None, err, msg)

    def _on_delivery_of(self, timestamp_ms: int | None, context: object, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        self.failed += 1
        if self.collect_failures:
            self._failures.append(_failed(err, msg, timestamp_ms, context))
            log.debug("delivery to %s failed (collected): %s", msg.topic(), err.str())
            return
        self._unhandled += 1
        if len(self._first_errors) < 5:
            self._first_errors.append(f"{msg.topic()}: {err.str()}")
        log.error("delivery to %s failed: %s", msg.topic(), err.str())

    def take_failures(self) -> list[FailedRecord]:
        """The failed deliveries collected so far (`collect_failures=True`), forgetting them."""
        taken, self._failures = self._failures, []
        return taken

    def resend_alone(self, records: Iterable[FailedRecord], timeout: float = 30.0) -> list[FailedRecord]:
        """Send each record again in a batch of its own; returns those the broker refused again.

        Records go out one per partition at a time (a batch holds one partition's records), each
        round flushed, so a good record that failed beside a bad one is judged on its own. Needs
        `collect_failures=True`. Records still queued after `timeout` raise `ProduceError`.
        """
        if not self.collect_failures:
            msg = "resend_alone: expected a producer made with collect_failures=True"
            raise ValueError(msg)
        self.flush(timeout)  # nothing else in flight: a resent record shares no batch
        # Failures of other sends stay for the caller's next `take_failures()`.
        others = self.take_failures()
        pending: dict[int | None, list[FailedRecord]] = {}
        for r in records:
            pending.setdefault(r.partition, []).append(r)
        while pending:
            for partition in list(pending):
                queue = pending[partition]
                r = queue.pop(0)
                if not queue:
                    del pending[partition]
                self.send_raw(
                    r.topic,
                    r.value,
                    key=r.key,
                    headers=r.headers,
                    timestamp_ms=r.timestamp_ms,
                    partition=partition,
                    context=r.context,
                )
                if partition is None:  # unknown partition: alone means alone in the whole producer
                    self.flush(timeout)
            self.flush(timeout)
        again = self.take_failures()
        self._failures = others
        return again

    # -- sending ------------------------------------------------------------------------------------
    def send_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | str | None = None,
        headers: Sequence[tuple[str, bytes | None]] | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
        context: object = None,
        block: bool = True,
    ) -> None:
        """Queue one record; blocks briefly (serving delivery reports) when the local queue is full,
        or with `block=False` raises `BufferError` then (a caller that must never wait: serving).

        `context` travels with the record into its `FailedRecord` if delivery fails (e.g. the input
        line number). While failures are collected, each record carries its timestamp and context
        to its delivery report (a small object per record: ~0.2 µs).
        """
        if self.collect_failures or context is not None:
            on_delivery: Any = partial(self._on_delivery_of, timestamp_ms, context)
        else:
            on_delivery = self._on_delivery
        kwargs: dict[str, Any] = {"key": key, "headers": headers, "on_delivery": on_delivery}
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                self.queued += 1
                return
            except BufferError:
                if not block:
                    raise
                self._producer.poll(0.05)

    def send(self, topic: str, event: Event, *, timestamp_ms: int | None = None, block: bool = True) -> None:
        """Serialize and queue one event; the record timestamp defaults to the event time (`block`: see `send_raw`)."""
        self.send_raw(
            topic,
            event.model_dump_json().encode(),
            key=event.key(),
            headers=event_headers(type(event)),
            timestamp_ms=event.event_time if timestamp_ms is None else timestamp_ms,
            block=block,
        )

    def send_many(self, topic: str, events: Iterable[Event]) -> int:
        """Queue many events; returns how many were queued."""
        n = 0
        for event in events:
            self.send(topic, event)
            n += 1
            if n % 10_000 == 0:
                self._producer.poll(0)
        return n

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery reports."""
        return self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every queued record; raise `ProduceError` if any failed or is still queued.

        Failures that arrived while `collect_failures` was on are left to `take_failures()` and
        do not raise.
        """
        remaining = self._producer.flush(timeout)
        if remaining or self._unhandled:
            errors = list(self._first_errors)
            if remaining:
                errors.append(f"{remaining} record(s) still queued after {timeout:.0f}s")
            raise ProduceError(self._unhandled + remaining, errors)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.flush()
        else:
            # Still deliver what was queued, but let the original exception win.
            self._producer.flush(10.0)
