"""The base of every affresco event: a frozen pydantic model with an event time and a schema version."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from streams.events.fields import JsonInt

__all__ = ["MAX_EVENT_TIME_MS", "MIN_EVENT_TIME_MS", "EpochMs", "Event"]

# Event times (and every other epoch-ms field) lie in [2000-01-01, 2100-01-01): anything outside is
# a unit mistake (seconds, µs or ns instead of ms) or a placeholder, not a marketplace event. How far
# ahead of the receiver's clock an event may be is checked at decode time (`max_future_ms`).
MIN_EVENT_TIME_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_EVENT_TIME_MS = 4_102_444_799_999  # 2099-12-31T23:59:59.999Z

EpochMs = Annotated[int, JsonInt(MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS)]

_TYPE_NAMES: dict[type, str] = {}


class Event(BaseModel):
    """An immutable, typed event.

    Subclasses declare `event_type` as a `Literal` field with a default (so the type travels in the
    payload and in the `event_type` header), `schema_version` and `key_field`, the field whose value
    is the Kafka key: one entity's events stay ordered in one partition.

    Input is strict JSON: NaN and Infinity are refused (`allow_inf_nan=False`), as are numbers
    outside the double range, and ints must be integral numbers within their bounds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    schema_version: ClassVar[int] = 1
    key_field: ClassVar[str]
    # For the exported schema (`x-affresco`): what the Kafka key is when it is not `key_field`, and
    # the fields that identify a record's content when its topic is written at least once.
    key_note: ClassVar[str | None] = None
    dedupe_key: ClassVar[tuple[str, ...] | None] = None

    event_time: EpochMs = Field(
        description="Event time, UTC epoch milliseconds, from 2000-01-01 to before 2100-01-01; receivers "
        "also refuse event times more than their max_future_ms (default 1 h) ahead of their clock."
    )

    @classmethod
    def type_name(cls) -> str:
        """The `event_type` string of this class (the default of its `event_type` field)."""
        name = _TYPE_NAMES.get(cls)
        if name is None:  # pydantic's model_fields lookup costs ~1 µs: hot paths call this per record
            default: Any = cls.model_fields["event_type"].default
            name = _TYPE_NAMES[cls] = str(default)
        return name

    def key(self) -> str:
        """The Kafka key: the value of `key_field`."""
        return str(getattr(self, self.key_field))
