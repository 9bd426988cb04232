"""The base of every affresco event: a frozen pydantic model with an event time and a schema version."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_EVENT_TIME_MS", "Event", "EventTime"]

# 9999-12-31: anything later is a unit mistake (µs or ns instead of ms).
MAX_EVENT_TIME_MS = 253_402_300_799_999

_TYPE_NAMES: dict[type, str] = {}

EventTime = Field(ge=0, le=MAX_EVENT_TIME_MS, description="Event time, UTC epoch milliseconds.")


class Event(BaseModel):
    """An immutable, typed event.

    Subclasses declare `event_type` as a `Literal` field with a default (so the type travels in the
    payload and in the `event_type` header), `schema_version` and `key_field`, the field whose value
    is the Kafka key: one entity's events stay ordered in one partition.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    schema_version: ClassVar[int] = 1
    key_field: ClassVar[str]

    event_time: int = EventTime

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
