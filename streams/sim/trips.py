"""How a trip request goes: its surge quote, its driver, and how (and when) it ends."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from streams.events.domain import MAX_ETA_S, MIN_ETA_S, TripCancelled, TripCompleted, TripRequested
from streams.sim.eta import ground_truth_eta_s
from streams.sim.fleet import Fleet
from streams.sim.profiles import LocalTime
from streams.sim.world import City, Zone

__all__ = ["DRIVER_CANCEL_P", "MAX_SURGE", "SurgeMeter", "TripEnd", "trip_outcome"]

MAX_SURGE = 3.0
SURGE_TAU_MS = 10 * 60_000  # zone demand is an exponentially decayed count over ~10 minutes
SURGE_THRESHOLD = 2.0  # recent requests per free driver before prices rise
SURGE_SLOPE = 0.25  # surge added per request per free driver above the threshold
DRIVER_CANCEL_P = 0.025
MIN_ETA_MS = round(MIN_ETA_S * 1000)
MAX_ETA_MS = round(MAX_ETA_S * 1000)

CancelledBy = Literal["rider", "driver", "system"]


@dataclass(slots=True)
class TripEnd:
    """A scheduled completion or cancellation, and the driver it frees (-1: none) in which zone."""

    event: TripCompleted | TripCancelled
    driver: int
    zone_index: int


class SurgeMeter:
    """Quotes surge per zone from recent requests over free drivers, in steps of 0.1 up to 3.0."""

    def __init__(self, fleet: Fleet, start_ms: int) -> None:
        self.fleet = fleet
        n = len(fleet.world.zones)
        self._demand = [0.0] * n
        self._demand_at = [start_ms] * n

    def quote(self, zone_index: int, at: int) -> float:
        """Count one more request in the zone at `at` and quote its surge."""
        decay = math.exp((self._demand_at[zone_index] - at) / SURGE_TAU_MS)
        demand = self._demand[zone_index] * decay + 1.0
        self._demand[zone_index], self._demand_at[zone_index] = demand, at
        ratio = demand / (self.fleet.available_in(zone_index) + 1.0)
        if ratio <= SURGE_THRESHOLD:
            return 1.0
        return min(MAX_SURGE, round(1.0 + SURGE_SLOPE * (ratio - SURGE_THRESHOLD), 1))


def trip_outcome(
    request: TripRequested,
    city: City,
    pickup: Zone,
    dropoff: Zone,
    local: LocalTime,
    fleet: Fleet,
    rng: random.Random,
    speed_factor: float = 1.0,
) -> TripEnd:
    """Match a driver and decide how the trip ends: cancelled (by whom, when) or completed.

    No free driver in the nearest zones: the system gives up after 45-180 s. Otherwise the rider
    cancels with probability 0.02 + 0.10 * (surge - 1) + 0.04 * (rank of the driver's zone), the driver
    with `DRIVER_CANCEL_P`, and the trip completes after `ground_truth_eta_s` with the city's fare.
    """
    at, surge = request.event_time, request.surge
    match = fleet.dispatch(pickup, rng)
    if match is None:
        delay_ms = int(rng.uniform(45_000, 180_000))
        return TripEnd(_cancelled(request, at + delay_ms, "system", "no_driver_available"), -1, pickup.index)
    u = rng.random()
    # Riders balk at high prices and at drivers far away (a driver from the k-th nearest zone).
    p_rider = 0.02 + 0.10 * (surge - 1.0) + 0.04 * match.rank
    if u < p_rider:
        reason = "price_too_high" if surge >= 1.5 else rng.choice(("changed_mind", "wait_too_long"))
        delay_ms = 5_000 + int(rng.expovariate(1 / 90_000))
        return TripEnd(_cancelled(request, at + delay_ms, "rider", reason), match.driver, pickup.index)
    if u < p_rider + DRIVER_CANCEL_P:
        delay_ms = int(rng.uniform(20_000, 240_000))
        cancel = _cancelled(request, at + delay_ms, "driver", "driver_unavailable")
        return TripEnd(cancel, match.driver, pickup.index)
    eta = ground_truth_eta_s(
        request.distance_km,
        city=city,
        pickup_zone=pickup,
        local=local,
        surge=surge,
        noise_z=rng.gauss(0.0, 1.0),
        speed_factor=speed_factor,
    )
    # The label is exact to the ms (eta_s * 1000 == delta t), within the schema's 1 s to a day.
    eta_ms = min(max(MIN_ETA_MS, round(eta * 1000.0)), MAX_ETA_MS)
    done = TripCompleted(
        event_time=at + eta_ms,
        trip_id=request.trip_id,
        rider_id=request.rider_id,
        driver_id=fleet.world.driver_ids[match.driver],
        country=request.country,
        city=request.city,
        pickup_zone=request.pickup_zone,
        dropoff_zone=request.dropoff_zone,
        distance_km=request.distance_km,
        requested_at=at,
        eta_s=eta_ms / 1000.0,
        fare=city.spec.fare.fare(request.distance_km, eta_ms / 1000.0, surge),
    )
    return TripEnd(done, match.driver, dropoff.index)


def _cancelled(request: TripRequested, at: int, by: CancelledBy, reason: str) -> TripCancelled:
    return TripCancelled(
        event_time=at,
        trip_id=request.trip_id,
        rider_id=request.rider_id,
        country=request.country,
        city=request.city,
        pickup_zone=request.pickup_zone,
        requested_at=request.event_time,
        cancelled_by=by,
        reason=reason,
    )
