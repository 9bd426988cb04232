"""Domain events of the ride-hailing marketplace that the simulator produces.

Trip events are keyed by rider (a rider's trips stay ordered in one partition); driver pings by
driver. Distances are in km, durations in seconds, money in the city's currency units. Bounds are
those of a real marketplace: a trip is 10 m to 500 km long, lasts 1 s to a day, and costs at most
1,000,000 currency units.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streams.events.base import EpochMs, Event
from streams.events.fields import Id

__all__ = ["MAX_DISTANCE_KM", "MAX_ETA_S", "MAX_FARE", "MIN_DISTANCE_KM", "MIN_ETA_S", "DriverPing",
           "TripCancelled", "TripCompleted", "TripRequested"]  # fmt: skip

MIN_DISTANCE_KM = 0.01
MAX_DISTANCE_KM = 500.0
MIN_ETA_S = 1.0
MAX_ETA_S = 86_400.0  # a day
MAX_FARE = 1_000_000.0

Country = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2 code.")
Distance = Field(ge=MIN_DISTANCE_KM, le=MAX_DISTANCE_KM, description="Trip distance, km.")
RequestedAt = Field(description="Event time of the trip's request, UTC epoch milliseconds.")


class TripRequested(Event):
    """A rider asks for a trip; the platform quotes a fare multiplier (surge)."""

    key_field = "rider_id"
    event_type: Literal["trip_requested"] = "trip_requested"
    trip_id: str = Id
    rider_id: str = Id
    country: str = Country
    city: str = Id
    pickup_zone: str = Id
    dropoff_zone: str = Id
    distance_km: float = Distance
    surge: float = Field(1.0, ge=1.0, le=10.0, description="Fare multiplier quoted with the request.")


class DriverPing(Event):
    """A driver's periodic status report from a zone."""

    key_field = "driver_id"
    event_type: Literal["driver_ping"] = "driver_ping"
    driver_id: str = Id
    country: str = Country
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
    country: str = Country
    city: str = Id
    pickup_zone: str = Id
    dropoff_zone: str = Id
    distance_km: float = Distance
    requested_at: EpochMs = RequestedAt
    eta_s: float = Field(ge=MIN_ETA_S, le=MAX_ETA_S, description="Actual seconds from request to drop-off.")
    fare: float = Field(ge=0, le=MAX_FARE, description="Fare paid, in the city's currency units.")


class TripCancelled(Event):
    """A trip request that did not complete."""

    key_field = "rider_id"
    event_type: Literal["trip_cancelled"] = "trip_cancelled"
    trip_id: str = Id
    rider_id: str = Id
    country: str = Country
    city: str = Id
    pickup_zone: str = Id
    requested_at: EpochMs = RequestedAt
    cancelled_by: Literal["rider", "driver", "system"]
    reason: str = Field(max_length=200)
