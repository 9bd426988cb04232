"""Prediction events, sent without blocking the response.

`produce()` only queues a record in librdkafka; a background thread serves the delivery reports.
When Kafka is down the queue fills and later sends fail: the service keeps answering, and counts
what it could not emit (`/metrics`, `/readyz`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from streams.admin import TopicAdmin
from streams.events.platform import Prediction
from streams.exceptions import StreamsError
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["PredictionEmitter"]


class PredictionEmitter:
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings, self.topics = settings, Topics(settings)
        self._ensured: set[str] = set()
        self._wanted: set[str] = set()
        self.producer = EventProducer(settings, linger_ms=5, collect_failures=True,
                                      config={"message.timeout.ms": 10_000, "enable.idempotence": False})  # fmt: skip
        self.queued = self.refused = 0
        self._delivery_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="prediction-emitter", daemon=True)
        self._thread.start()

    def emit(self, model: str, events: Iterable[Prediction]) -> None:
        topic = self.topics.predictions(model)
        if model not in self._ensured:
            self._wanted.add(model)  # the topic is created (with its spec) by the background thread
        for event in events:
            try:
                self.producer.send(topic, event)
                self.queued += 1
            except BufferError:  # librdkafka's queue is full (Kafka unreachable for a while)
                self.refused += 1

    @property
    def failed(self) -> int:
        """Predictions that will never be on the topic: refused by a full queue, or whose delivery failed."""
        return self.refused + self._delivery_failures

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            for model in list(self._wanted - self._ensured):
                try:  # with its spec (partitions, retention) rather than a broker default
                    TopicAdmin(self.settings, timeout_s=2.0).ensure([self.topics.predictions_spec(model)])
                    self._ensured.add(model)
                except StreamsError:
                    pass  # Kafka unreachable: tried again on the next turn; sends meanwhile are counted
            self.producer.poll(0.2)
            self._delivery_failures += len(self.producer.take_failures())

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self.producer.poll(0)
        self._delivery_failures += len(self.producer.take_failures())
