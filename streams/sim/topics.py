"""The domain topics the simulator writes to, and which event goes where."""

from __future__ import annotations

from streams.admin import TopicSpec
from streams.events.base import Event
from streams.events.domain import DriverPing, TripCancelled, TripCompleted, TripRequested

__all__ = ["DRIVER_PINGS_TOPIC", "TRIPS_TOPIC", "domain_topic_specs", "topic_for"]

TRIPS_TOPIC = "rides.trips"
DRIVER_PINGS_TOPIC = "rides.driver_pings"

_TOPIC_OF: dict[type[Event], str] = {
    TripRequested: TRIPS_TOPIC,
    TripCompleted: TRIPS_TOPIC,
    TripCancelled: TRIPS_TOPIC,
    DriverPing: DRIVER_PINGS_TOPIC,
}


def topic_for(event: Event, prefix: str = "") -> str:
    """The topic of a domain event: trip lifecycle events share one topic (keyed by rider, so a
    rider's request always precedes its outcome in one partition); driver pings have their own.

    >>> from streams.events.domain import DriverPing
    >>> topic_for(DriverPing(event_time=0, driver_id="d-00001", country="US", city="sfo",
    ...                      zone="sfo-01", status="available"))
    'rides.driver_pings'
    """
    try:
        return prefix + _TOPIC_OF[type(event)]
    except KeyError:
        known = ", ".join(sorted(cls.__name__ for cls in _TOPIC_OF))
        msg = f"no domain topic for {type(event).__name__}; expected one of: {known}"
        raise TypeError(msg) from None


def domain_topic_specs(partitions: int = 4, prefix: str = "") -> list[TopicSpec]:
    """Specs of the domain topics, kept forever (`retention_ms=-1`).

    Why unlimited retention: the simulator (like any backfill) produces events with *historical*
    event times, and the producer uses the event time as the record timestamp. Kafka's time-based
    retention deletes by record timestamp, so on a default 7-day topic a simulated month from the
    past would be deleted within minutes of being written. These topics are the source of truth
    that features are replayed from; trim them deliberately (or archive to Parquet), not by age.
    """
    return [
        TopicSpec(prefix + TRIPS_TOPIC, partitions=partitions, retention_ms=-1),
        TopicSpec(prefix + DRIVER_PINGS_TOPIC, partitions=partitions, retention_ms=-1),
    ]
