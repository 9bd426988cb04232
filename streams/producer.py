"""An idempotent Kafka producer for events: `acks=all`, delivery errors surfaced, flushed on exit."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.events.base import Event
from streams.exceptions import ProduceError
from streams.settings import KafkaSettings

__all__ = ["EventProducer", "event_headers"]

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


class EventProducer:
    """Produce events (or already-validated raw bytes) to Kafka.

    Idempotent (`enable.idempotence`, `acks=all`): a retried send never duplicates a record.
    Delivery failures are counted and raised by `flush()`, so nothing is lost silently.
    Use as a context manager to flush on exit::

        with EventProducer(KafkaSettings()) as producer:
            producer.send("rides.trips", event)
    """

    def __init__(
        self,
        settings: KafkaSettings | None = None,
        *,
        linger_ms: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings or KafkaSettings()
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
        self._first_errors: list[str] = []

    # -- delivery reports -------------------------------------------------------------------------
    @property
    def delivered(self) -> int:
        """Records acknowledged so far (exact after `flush()`)."""
        return self.queued - self.failed - len(self._producer)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        self.failed += 1
        if len(self._first_errors) < 5:
            self._first_errors.append(f"{msg.topic()}: {err.str()}")
        log.error("delivery to %s failed: %s", msg.topic(), err.str())

    # -- sending ------------------------------------------------------------------------------------
    def send_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | str | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record; blocks briefly (serving delivery reports) when the local queue is full."""
        kwargs: dict[str, Any] = {"key": key, "headers": headers, "on_delivery": self._on_delivery}
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                self.queued += 1
                return
            except BufferError:
                self._producer.poll(0.05)

    def send(self, topic: str, event: Event, *, timestamp_ms: int | None = None) -> None:
        """Serialize and queue one event; the record timestamp defaults to the event time."""
        self.send_raw(
            topic,
            event.model_dump_json().encode(),
            key=event.key(),
            headers=event_headers(type(event)),
            timestamp_ms=event.event_time if timestamp_ms is None else timestamp_ms,
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
        """Wait for every queued record; raise `ProduceError` if any failed or is still queued."""
        remaining = self._producer.flush(timeout)
        if remaining or self.failed:
            errors = list(self._first_errors)
            if remaining:
                errors.append(f"{remaining} record(s) still queued after {timeout:.0f}s")
            raise ProduceError(self.failed + remaining, errors)

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
