"""A batch consumer with explicit commits: offsets are committed only after the caller has handled a batch."""

from __future__ import annotations

import logging
import operator
from collections.abc import Sequence
from types import TracebackType
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.exceptions import StreamsError
from streams.settings import KafkaSettings
from streams.types import KafkaMessage

__all__ = ["EventConsumer", "HeadersError", "header", "message_headers", "next_offsets"]

log = logging.getLogger(__name__)

# Called through methodcaller, never as `msg.headers()`: on a header key that is not UTF-8,
# confluent-kafka (2.16) returns a header list holding a NULL with the UnicodeDecodeError still
# set. A plain method call, once CPython has specialized it in a hot loop, skips the check that
# turns that into an exception, and the next touch of the list crashes the interpreter
# (segmentation fault); methodcaller goes through the checked call path.
_HEADERS = operator.methodcaller("headers")


class HeadersError(StreamsError):
    """A record's headers cannot be read (a header key is not UTF-8)."""


def message_headers(msg: KafkaMessage) -> Any:
    """`msg.headers()`, safely: `HeadersError` when a header key is not UTF-8.

    Never call `headers()` on that message again: its cached header list is broken.
    """
    try:
        return _HEADERS(msg)
    except (UnicodeDecodeError, SystemError) as exc:
        cause = exc if isinstance(exc, UnicodeDecodeError) else exc.__cause__ or exc.__context__
        key = cause.object if isinstance(cause, UnicodeDecodeError) and isinstance(cause.object, bytes) else b"?"
        shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
        msg_text = f"expected UTF-8 header keys, got header key {shown}"
    raise HeadersError(msg_text)


def header(msg: KafkaMessage, name: str) -> bytes | None:
    """The value of one header of a message, or None (also when its headers cannot be read)."""
    try:
        headers = message_headers(msg) or ()
    except HeadersError:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for k, v in items:
        if k == name:
            return v.encode() if isinstance(v, str) else v
    return None


def next_offsets(messages: Sequence[KafkaMessage]) -> list[TopicPartition]:
    """The offsets to commit after `messages`: per partition, the highest offset + 1."""
    highest: dict[tuple[str, int], int] = {}
    for m in messages:
        tp = (cast(str, m.topic()), cast(int, m.partition()))
        off = cast(int, m.offset())
        if off > highest.get(tp, -1):
            highest[tp] = off
    return [TopicPartition(t, p, o + 1) for (t, p), o in highest.items()]


class EventConsumer:
    """Consume in batches from a consumer group; commit explicitly.

    Auto-commit is off: a crash between `poll()` and `commit()` redelivers the batch (at-least-once),
    so downstream writes must be idempotent (event-time-versioned upserts).
    """

    def __init__(
        self,
        topics: Sequence[str],
        group_id: str,
        settings: KafkaSettings | None = None,
        *,
        from_beginning: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings or KafkaSettings()
        conf: dict[str, Any] = {
            **self.settings.client_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.partition.eof": False,
        }
        conf.update(config or {})
        self._consumer = Consumer(conf)
        self._consumer.subscribe(list(topics))

    def poll(self, max_messages: int = 5000, timeout: float = 1.0) -> list[Message]:
        """Up to `max_messages` records (fewer if `timeout` passes); transport errors are logged, fatal ones raised."""
        msgs = self._consumer.consume(max_messages, timeout)
        good: list[Message] = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.fatal():
                msg = f"fatal consumer error: {err.str()}"
                raise StreamsError(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error on %s: %s", m.topic(), err.str())
        return good

    def commit(self, messages: Sequence[KafkaMessage]) -> None:
        """Synchronously commit the offsets following `messages`."""
        offsets = next_offsets(messages)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            msg = f"offset commit failed: {exc.args[0].str()}"
            raise StreamsError(msg) from exc

    def committed(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        tps = self._consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in tps}

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
