"""Every event type by name, and a validator for payloads that name their own type."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter

from streams.events.base import Event
from streams.events.domain import DriverPing, TripCancelled, TripCompleted, TripRequested
from streams.events.platform import (
    Alert,
    DeadLetter,
    FeatureUpdate,
    ModelVersion,
    MonitoringMetric,
    Outcome,
    Prediction,
)
from streams.exceptions import UnknownEventTypeError

__all__ = ["EVENT_TYPES", "AnyEvent", "any_event_adapter", "event_class"]

_ALL: tuple[type[Event], ...] = (
    TripRequested,
    DriverPing,
    TripCompleted,
    TripCancelled,
    FeatureUpdate,
    ModelVersion,
    Prediction,
    Outcome,
    MonitoringMetric,
    Alert,
    DeadLetter,
)

EVENT_TYPES: dict[str, type[Event]] = {cls.type_name(): cls for cls in _ALL}

AnyEvent = Annotated[
    TripRequested
    | DriverPing
    | TripCompleted
    | TripCancelled
    | FeatureUpdate
    | ModelVersion
    | Prediction
    | Outcome
    | MonitoringMetric
    | Alert
    | DeadLetter,
    Field(discriminator="event_type"),
]

any_event_adapter: TypeAdapter[Event] = TypeAdapter(AnyEvent)


def _normalise(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


_BY_LOOSE_NAME = {_normalise(n): cls for n, cls in EVENT_TYPES.items()} | {
    _normalise(cls.__name__): cls for cls in _ALL
}


def event_class(name: str) -> type[Event]:
    """The event class for `trip_requested`, `TripRequested` or `trip-requested`.

    >>> event_class("TripRequested").type_name()
    'trip_requested'
    """
    try:
        return _BY_LOOSE_NAME[_normalise(name)]
    except KeyError:
        raise UnknownEventTypeError(name, sorted(EVENT_TYPES)) from None
