"""Domain events of the ride-hailing marketplace that the simulator produces.

Trip events are keyed by rider (a rider's trips stay ordered in one partition); driver pings by
driver. Distances are in km, durations in seconds, money in the city's currency units.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streams.events.base import Event, EventTime

__all__ = ["DriverPing", "TripCancelled", "TripCompleted", "TripRequested"]

Id = Field(min_length=1, max_length=64)


class TripRequested(Event):
    """A rider asks for a trip; the platform quotes a fare multiplier (surge)."""

    key_field = "rider_id"
    event_type: Literal["trip_requested"] = "trip_requested"
    trip_id: str = Id
    rider_id: str = Id
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2 code.")
    city: str = Id
    pickup_zone: str = Id
    dropoff_zone: str = Id
    distance_km: float = Field(gt=0, le=500)
    surge: float = Field(1.0, ge=1.0, le=10.0)


class DriverPing(Event):
    """A driver's periodic status report from a zone."""

    key_field = "driver_id"
    event_type: Literal["driver_ping"] = "driver_ping"
    driver_id: str = Id
    country: str = Field(min_length=2, max_length=2)
    city: str = Id
    zone: str = Id
    status: Literal["available", "on_trip", "offline"]


class TripCompleted(Event):
    """A trip ended; `eta_s` is the actual duration from request to drop-off (the ETA label)."""

    key_field = "rider_id"
    event_type: Literal["trip_completed"] = "trip_completed"
    trip_id: str = Id
    rider_id: str = Id
    driver_id: str = Id
    country: str = Field(min_length=2, max_length=2)
    city: str = Id
    pickup_zone: str = Id
    dropoff_zone: str = Id
    distance_km: float = Field(gt=0, le=500)
    requested_at: int = EventTime
    eta_s: float = Field(gt=0, description="Actual seconds from request to drop-off.")
    fare: float = Field(ge=0)


class TripCancelled(Event):
    """A trip request that did not complete."""

    key_field = "rider_id"
    event_type: Literal["trip_cancelled"] = "trip_cancelled"
    trip_id: str = Id
    rider_id: str = Id
    country: str = Field(min_length=2, max_length=2)
    city: str = Id
    pickup_zone: str = Id
    requested_at: int = EventTime
    cancelled_by: Literal["rider", "driver", "system"]
    reason: str = Field(max_length=200)
