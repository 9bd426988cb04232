"""What flows between the steps of the stream processor (named records, not tuples)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from processors.engine import EntityUpdate, HistoryRow, Rejected, SourceRow

__all__ = [
    "ArchiveBatch",
    "ArchiveRow",
    "DeadLetterBatch",
    "DeadLetterItem",
    "DecodedPoll",
    "GroupOutput",
    "ShardBatch",
    "TopicCounts",
]


@dataclass(frozen=True)
class ArchiveRow:
    """One raw source record, for the Parquet archive that lets replays reach past Kafka retention.

    `event_type` is the type routing gave it (None: rejected before decoding); `valid` whether it
    decoded as a valid event of that type (None: not decoded, no group reads the type);
    `event_time` its event time when valid, else its record timestamp.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event_time: int
    event_type: str | None
    valid: bool | None


@dataclass(frozen=True)
class DeadLetterItem:
    """A source record that cannot be accepted: malformed, invalid, unroutable, or rejected by a group."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    error: str
    expected_type: str | None = None
    group: str | None = None
    step: str | None = None


@dataclass
class DecodedPoll:
    """One poll of one source partition, routed and validated, in offset order.

    `rows[event_type]` are the valid events (each stamped with its `prior_max`); `progress[event_type]`
    is the greatest event time among the partition's valid events of that type read so far.
    """

    topic: str
    partition: int
    rows: dict[str, list[SourceRow]] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)
    dead: list[DeadLetterItem] = field(default_factory=list)
    archive: list[ArchiveRow] = field(default_factory=list)
    read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # known types no group reads, by type


@dataclass(frozen=True)
class ShardBatch:
    """Validated source rows of one group for one state shard, and the source partition's progress."""

    shard: str  # "<group ref>#<n>": the key of the state step
    group: str  # group ref, name:vN
    rows: list[SourceRow]
    progress: dict[int, int]  # source partition -> greatest valid event time of the group's type so far


@dataclass(frozen=True)
class GroupOutput:
    """What one shard's state step produced for one group from one batch (or at the end of input)."""

    group: str
    source_topic: str
    updates: list[EntityUpdate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    accepted: int = 0
    filtered: int = 0
    late: int = 0


@dataclass(frozen=True)
class TopicCounts:
    """Records read from a topic in one poll: the accounting before any group sees them."""

    topic: str
    read: int
    skipped: Counter[str]
    dead: Counter[str]  # by reason


@dataclass(frozen=True)
class ArchiveBatch:
    """The raw records of one poll (one item per batch keeps per-item dataflow overhead away)."""

    rows: list[ArchiveRow]


@dataclass(frozen=True)
class DeadLetterBatch:
    items: list[DeadLetterItem]
