"""What flows between the steps of the stream processor (named records, not tuples)."""

from __future__ import annotations

from dataclasses import dataclass, field

from processors.engine import EntityUpdate, Rejected, SourceRow

__all__ = ["ArchiveBatch", "ArchiveRow", "DeadLetterBatch", "DeadLetterItem", "GroupOutput", "ShardBatch"]


@dataclass(frozen=True)
class ShardBatch:
    """Validated source rows of one group for one state shard, in arrival order."""

    shard: str  # "<group ref>#<n>": the key of the state step
    group: str  # group ref, name:vN
    rows: list[SourceRow]
    partition_max: dict[int, int]  # greatest record timestamp per source partition in this poll


@dataclass(frozen=True)
class GroupOutput:
    """What one shard's state step produced for one group from one batch."""

    group: str
    updates: list[EntityUpdate] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    source_topic: str = ""


@dataclass(frozen=True)
class ArchiveRow:
    """One raw source record, for the Parquet archive that lets replays reach past Kafka retention."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    event_time: int | None
    event_type: str | None


@dataclass(frozen=True)
class DeadLetterItem:
    """A source record no group could accept (malformed or invalid)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    error: str
    expected_type: str | None = None


@dataclass(frozen=True)
class ArchiveBatch:
    """The raw records of one poll (one item per batch keeps per-item dataflow overhead away)."""

    rows: list[ArchiveRow]


@dataclass(frozen=True)
class DeadLetterBatch:
    items: list[DeadLetterItem]
