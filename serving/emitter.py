"""Prediction events, sent without blocking the response.

`produce()` only queues a record in librdkafka; a background thread serves the delivery reports.
When Kafka is down the queue fills and later sends fail: the service keeps answering, and counts
what it could not emit (`/metrics`, `/readyz`).

A model's predictions topic is created with its spec (partitions, retention) by the background
thread before anything is sent to it: until then its events wait here (at most `max_pending`),
so the broker never auto-creates the topic with its defaults.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from streams.admin import TopicAdmin
from streams.events.platform import Prediction
from streams.exceptions import StreamsError
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["PredictionEmitter"]


class PredictionEmitter:
    def __init__(self, settings: KafkaSettings, *, max_pending: int = 100_000) -> None:
        self.settings, self.topics = settings, Topics(settings)
        self._ensured: set[str] = set()
        self._pending: dict[str, deque[Prediction]] = {}
        self._lock = threading.Lock()
        self.max_pending = max_pending
        self.producer = EventProducer(settings, linger_ms=5, collect_failures=True,
                                      config={"message.timeout.ms": 10_000, "enable.idempotence": False})  # fmt: skip
        self.queued = self.refused = 0
        self._delivery_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="prediction-emitter", daemon=True)
        self._thread.start()

    def emit(self, model: str, events: Iterable[Prediction]) -> None:
        if model not in self._ensured:
            with self._lock:
                if model not in self._ensured:  # its topic does not exist yet: the events wait
                    pending = self._pending.setdefault(model, deque())
                    for event in events:
                        if len(pending) < self.max_pending:
                            pending.append(event)
                        else:
                            self.refused += 1
                    return
        self._send(self.topics.predictions(model), events)

    def _send(self, topic: str, events: Iterable[Prediction]) -> None:
        for event in events:
            try:
                self.producer.send(topic, event, block=False)
                self.queued += 1
            except BufferError:  # librdkafka's queue is full (Kafka unreachable for a while)
                self.refused += 1

    @property
    def pending(self) -> int:
        """Events waiting for their model's predictions topic to be created."""
        return sum(len(p) for p in self._pending.values())

    @property
    def failed(self) -> int:
        """Predictions that will never be on the topic: refused by a full queue, or whose delivery failed."""
        return self.refused + self._delivery_failures

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            for model in list(self._pending):
                try:  # with its spec (partitions, retention) rather than a broker default
                    TopicAdmin(self.settings, timeout_s=2.0).ensure([self.topics.predictions_spec(model)])
                except StreamsError:
                    continue  # Kafka unreachable: tried again on the next turn; the events wait
                with self._lock:
                    waiting = self._pending.pop(model)
                    self._ensured.add(model)
                    self._send(self.topics.predictions(model), waiting)
            self.producer.poll(0.2)
            self._delivery_failures += len(self.producer.take_failures())

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        with self._lock:
            self.refused += self.pending  # their topic never came: lost, and counted
            self._pending.clear()
        self.producer.poll(0)
        self._delivery_failures += len(self.producer.take_failures())
