"""Prediction events, built and sent off the response path.

A request hands over what it scored (`submit`: a count and a function that builds the events)
and returns; the emitter's thread builds the events, queues them in librdkafka (`produce()`
never waits here: a full queue refuses) and serves the delivery reports. When Kafka is down the
service keeps answering, and counts what it could not emit (`/metrics`, `/readyz`).

A model's predictions topic is created with its spec (partitions, retention) before anything is
sent to it: until then its events wait here, so the broker never auto-creates the topic with its
defaults. Waiting events and handed-over requests are bounded together (`max_pending` events);
beyond that they are refused and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable

from streams.admin import TopicAdmin
from streams.events.platform import Prediction
from streams.exceptions import ProduceError, StreamsError
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["PredictionEmitter"]

logger = logging.getLogger(__name__)

Build = Callable[[], Iterable[Prediction]]


class PredictionEmitter:
    def __init__(self, settings: KafkaSettings, *, max_pending: int = 100_000) -> None:
        self.settings, self.topics = settings, Topics(settings)
        self.max_pending = max_pending
        self._ensured: set[str] = set()
        self._pending: dict[str, deque[Prediction]] = {}  # events waiting for their topic
        self._jobs: queue.SimpleQueue[tuple[str, int, Build]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._handed_over = 0  # events submitted and not yet built
        self.producer = EventProducer(settings, linger_ms=5, collect_failures=True,
                                      config={"message.timeout.ms": 10_000, "enable.idempotence": False})  # fmt: skip
        self.queued = self.refused = 0
        self._delivery_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-emitter", daemon=True)
        self._thread.start()

    def submit(self, model: str, count: int, build: Build) -> None:
        """Emit `build()`'s `count` events on the emitter's thread; returns at once."""
        with self._lock:
            if self._handed_over + self._waiting() + count > self.max_pending:
                self.refused += count
                return
            self._handed_over += count
        self._jobs.put((model, count, build))

    def emit(self, model: str, events: Iterable[Prediction]) -> None:
        """Queue ready events now (they wait here if the model's topic is not created yet)."""
        if model not in self._ensured:
            with self._lock:
                if model not in self._ensured:
                    pending = self._pending.setdefault(model, deque())
                    for event in events:
                        if self._waiting() < self.max_pending:
                            pending.append(event)
                        else:
                            self.refused += 1
                    return
        self._send(self.topics.predictions(model), events)

    @property
    def pending(self) -> int:
        """Events not on their way to Kafka yet: handed over, or waiting for their topic."""
        return self._handed_over + self._waiting()

    @property
    def failed(self) -> int:
        """Predictions that will never be on the topic: refused, or whose delivery failed."""
        return self.refused + self._delivery_failures

    def close(self, timeout: float = 5.0) -> None:
        """Build what was handed over, deliver what can be within `timeout`, count the rest as failed."""
        self._stop.set()
        self._thread.join(timeout)
        self._build_jobs()
        with self._lock:
            self.refused += self._waiting()  # their topic never came: lost, and counted
            self._pending.clear()
        try:
            self.producer.flush(timeout)
        except ProduceError as exc:
            self._delivery_failures += exc.failed
        self._delivery_failures += len(self.producer.take_failures())

    # -- the emitter's thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._ensure_topics()
            try:
                job = self._jobs.get(timeout=0.05)
            except queue.Empty:
                job = None
            if job is not None:
                self._build(*job)
                self._build_jobs()
            self.producer.poll(0)
            self._delivery_failures += len(self.producer.take_failures())

    def _build_jobs(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            self._build(*job)

    def _build(self, model: str, count: int, build: Build) -> None:
        try:
            events = list(build())
        except Exception:  # a bug in building must not stop the thread (and every later event)
            logger.exception("could not build %d prediction event(s) of %s", count, model)
            events = []
        with self._lock:
            self._handed_over -= count
            self.refused += count - len(events)
        self.emit(model, events)

    def _ensure_topics(self) -> None:
        for model in list(self._pending):
            try:  # with its spec (partitions, retention) rather than a broker default
                TopicAdmin(self.settings, timeout_s=2.0).ensure([self.topics.predictions_spec(model)])
            except StreamsError:
                continue  # Kafka unreachable: tried again on the next turn; the events wait
            with self._lock:
                waiting = self._pending.pop(model)
                self._ensured.add(model)
                self._send(self.topics.predictions(model), waiting)

    def _waiting(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def _send(self, topic: str, events: Iterable[Prediction]) -> None:
        for event in events:
            try:
                self.producer.send(topic, event, block=False)
                self.queued += 1
            except BufferError:  # librdkafka's queue is full (Kafka unreachable for a while)
                self.refused += 1
