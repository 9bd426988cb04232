"""Step 1 of the stream processor, inside each source partition: route, validate and stamp records.

Runs in offset order per Kafka partition, which is what makes each valid event's `prior_max`
(the greatest event time of the earlier valid events of its type in the partition) exact; the
maxima are part of the source partition's snapshot, so a restart stamps exactly as before.
Routing is `streams.routing.RecordRouter`'s: the `event_type` header, else the body's; records no
group can accept are dead letters, known types no group reads are skipped (counted).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from processors.engine import SourceRow
from processors.progress import PriorMax
from processors.runtime.items import ArchiveRow, DeadLetterItem, DecodedPoll
from streams.events.base import Event
from streams.routing import Accepted, RecordRouter, Skipped
from streams.settings import KafkaSettings
from streams.types import KafkaMessage

__all__ = ["PollDecoder"]


class PollDecoder:
    """Decode the polls of one source partition for the groups reading its topic."""

    def __init__(
        self,
        topic: str,
        partition: int,
        wanted: Iterable[type[Event]],
        settings: KafkaSettings,
        *,
        archive: bool,
        maxima: dict[str, int] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.archive = archive
        self.router = RecordRouter(
            list(wanted), max_bytes=settings.max_message_bytes, max_future_ms=settings.max_future_ms
        )
        self.prior = PriorMax({(partition, kind): t for kind, t in (maxima or {}).items()})

    @property
    def maxima(self) -> dict[str, int]:
        """Per event type, the greatest event time of this partition's valid events (for the snapshot)."""
        return {kind: t for (_, kind), t in self.prior.maxima.items()}

    def __call__(self, messages: Sequence[KafkaMessage]) -> DecodedPoll:
        poll = DecodedPoll(self.topic, self.partition, read=len(messages))
        now = time.time_ns() // 1_000_000  # one clock reading per poll for the future-event check
        route, stamp, partition, topic = self.router.route, self.prior.stamp, self.partition, self.topic
        archive = poll.archive if self.archive else None
        for m in messages:
            offset, value, key = m.offset() or 0, m.value() or b"", m.key()
            routed = route(m, now)
            if isinstance(routed, Accepted):
                fields = routed.event.__dict__  # the model's field dict: no copy
                t = fields["event_time"]
                kind = routed.type_name
                row = SourceRow(fields, partition, offset, value, key, stamp(partition, kind, t))
                poll.rows.setdefault(kind, []).append(row)
                if archive is not None:
                    archive.append(ArchiveRow(topic, partition, offset, key, value, t, kind, True))
                continue
            if isinstance(routed, Skipped):
                poll.skipped[routed.type_name] += 1
                if archive is not None:
                    archive.append(
                        ArchiveRow(topic, partition, offset, key, value, m.timestamp()[1], routed.type_name, None)
                    )
                continue
            routing = routed.expected_type is None or routed.reason == "unknown_schema_version"
            poll.dead.append(
                DeadLetterItem(topic, partition, offset, key, value, routed.reason, routed.error, routed.expected_type,
                               step="route" if routing else "decode")
            )  # fmt: skip
            if archive is not None:
                valid = False if routed.expected_type is not None else None
                archive.append(
                    ArchiveRow(topic, partition, offset, key, value, m.timestamp()[1], routed.expected_type, valid)
                )
        poll.progress = self.maxima
        return poll
