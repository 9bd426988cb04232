"""The marketplace simulation: a discrete-event loop that yields domain events in event-time order.

- Trip requests arrive as a non-homogeneous Poisson process. Its intensity is, per city,
  `trips_per_hour · demand_factor(local hour, weekday) · demand_scale`: constant within a UTC hour
  (city offsets are whole hours), so arrivals are drawn exactly, hour segment by hour segment.
- A request picks a city by intensity, pickup and drop-off zones by demand weight, a rider (frequent
  riders first), and is quoted a surge from the zone's recent demand over its free drivers.
- It is matched with a free driver from the pickup zone or one of the nearest zones. Without one the
  system cancels; otherwise the rider cancels with a probability rising with surge and with how far
  the driver is, the driver cancels now and then, and the rest complete at
  `requested_at + eta` with `eta` from `ground_truth_eta_s` and the fare from the city's table.
- Online drivers ping every `ping_interval_s` (±20%) with their status and zone; their number tracks
  `supply_factor(local hour)` of the city's drivers; offline drivers are silent.

Everything scheduled goes through one heap keyed by (event time, sequence number), so the output is
sorted by event time, ties broken by scheduling order, and memory holds only drivers and trips in
flight, never the stream. All randomness comes from one `random.Random(seed)`.
"""

from __future__ import annotations

import heapq
import random
import time
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate, islice

from pydantic import BaseModel, ConfigDict, Field

from streams.events.base import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, Event
from streams.events.domain import DriverPing, TripRequested
from streams.sim.drift import Drift
from streams.sim.fleet import AVAILABLE, OFFLINE, STATUS_NAMES, Fleet
from streams.sim.profiles import HOUR_MS, LocalTime, demand_factor, local_time, supply_factor
from streams.sim.trips import SurgeMeter, TripEnd, trip_outcome
from streams.sim.world import World, default_world

__all__ = ["LAST_START_MS", "SimConfig", "SimulationEndError", "Simulator", "simulate"]

ROAD_FACTOR = 1.3  # roads are longer than the straight line between zone centres
_DAY_MS = 86_400_000
# Every event must be a valid one: simulated time stays two days short of the last valid event
# time (a trip ends at most a day after its request), and a run starts at least a year earlier.
LAST_SIMULATED_MS = MAX_EVENT_TIME_MS - 2 * _DAY_MS
LAST_START_MS = MAX_EVENT_TIME_MS - 366 * _DAY_MS


class SimulationEndError(RuntimeError):
    """The simulation ran to the end of valid event times (2100-01-01)."""


class SimConfig(BaseModel):
    """Knobs of a simulation run; the defaults give ~6k events per simulated hour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    demand_scale: float = Field(
        1.0, gt=0, le=1000, description="Multiplies every city's request rate (not the drivers: > 1 means surge)."
    )
    ping_interval_s: float = Field(900.0, ge=1, description="Seconds between pings of an online driver.")
    offline_check_s: float = Field(900.0, ge=1, description="How often an offline driver may start a shift.")
    drifts: tuple[Drift, ...] = Field((), description="Injected drifts: a city's traffic slower from a moment on.")


@dataclass(slots=True)
class _DriverTick:
    """A driver's next ping (online) or shift check (offline)."""

    driver: int


@dataclass(frozen=True, slots=True)
class _Hour:
    """Everything that is constant during one UTC hour."""

    city_cum_rates: tuple[float, ...]  # requests per ms, cumulated over cities for `bisect`
    target_online: tuple[int, ...]
    local: tuple[LocalTime, ...]


class _Arrival:
    """Heap item: the next trip request (its exact time is `Simulator._next_arrival`)."""


_ARRIVAL = _Arrival()
_Item = _Arrival | TripEnd | _DriverTick


class Simulator:
    """An endless, deterministic stream of marketplace events from `start_ms` (default: now) on.

    Iterate it (once) for events; `world` defaults to `default_world()`, `config` to `SimConfig()`.

    >>> sim = Simulator(seed=7, start_ms=1_714_550_400_000)  # 2024-05-01T08:00Z
    >>> events = list(islice(sim, 3))
    >>> [e.event_time >= 1_714_550_400_000 for e in events]
    [True, True, True]
    """

    def __init__(
        self,
        seed: int = 42,
        start_ms: int | None = None,
        *,
        world: World | None = None,
        config: SimConfig | None = None,
    ) -> None:
        self.world = world or default_world()
        self.config = config or SimConfig()
        self.start_ms = int(time.time() * 1000) if start_ms is None else start_ms
        if not MIN_EVENT_TIME_MS <= self.start_ms <= LAST_START_MS:
            msg = (
                f"Simulator: expected start_ms from {MIN_EVENT_TIME_MS} (2000-01-01) to {LAST_START_MS} "
                f"(a year before 2100-01-01, the end of valid event times), got {self.start_ms}"
            )
            raise ValueError(msg)
        self.rng = random.Random(seed)
        self.fleet = Fleet(self.world)
        self._ping_ms = self.config.ping_interval_s * 1000.0
        self._check_ms = self.config.offline_check_s * 1000.0
        self._heap: list[tuple[int, int, _Item]] = []
        self._seq = 0
        self._hours: dict[int, _Hour] = {}
        self._surge = SurgeMeter(self.fleet, self.start_ms)
        # Trip ids differ between runs (seed, start) so that two runs can share a topic.
        tag = random.Random(f"trips/{seed}/{self.start_ms}").getrandbits(32)
        self._trip_prefix = f"t-{tag:08x}-"
        self._trips = 0
        self._next_arrival = float(self.start_ms)
        self._start_fleet()
        self._schedule_arrival()

    # -- scheduling --------------------------------------------------------------------------------
    def _push(self, at_ms: int, item: _Item) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_ms, self._seq, item))

    def _hour(self, hour_index: int) -> _Hour:
        hour = self._hours.get(hour_index)
        if hour is None:
            if len(self._hours) > 48:  # time only moves forward: old hours are never asked again
                self._hours.clear()
            t = hour_index * HOUR_MS
            local = tuple(local_time(t, c.spec.utc_offset_h) for c in self.world.cities)
            rates = (
                c.spec.trips_per_hour * demand_factor(lt) * self.config.demand_scale / HOUR_MS
                for c, lt in zip(self.world.cities, local, strict=True)
            )
            targets = tuple(
                round(c.spec.drivers * supply_factor(lt)) for c, lt in zip(self.world.cities, local, strict=True)
            )
            hour = _Hour(tuple(accumulate(rates)), targets, local)
            self._hours[hour_index] = hour
        return hour

    def _schedule_arrival(self) -> None:
        # Exact sampling of a piecewise-constant Poisson process: draw an exponential gap at the
        # current segment's rate; if it overshoots the segment, restart at its end (memorylessness).
        t = self._next_arrival
        while True:
            hour_index = int(t // HOUR_MS)
            rate = self._hour(hour_index).city_cum_rates[-1]
            t_next = t + self.rng.expovariate(rate)
            if t_next < (hour_index + 1) * HOUR_MS:
                break
            t = float((hour_index + 1) * HOUR_MS)
        self._next_arrival = t_next
        self._push(int(t_next), _ARRIVAL)

    def _start_fleet(self) -> None:
        hour = self._hour(self.start_ms // HOUR_MS)
        for city in self.world.cities:
            drivers = range(city.first_driver, city.first_driver + city.spec.drivers)
            online = set(self.rng.sample(drivers, hour.target_online[city.index]))
            for d in drivers:
                if d in online:
                    self.fleet.go_online(d, city.pick_zone(self.rng.random()).index)
                    first = self.start_ms + int(self.rng.random() * self._ping_ms)
                else:
                    first = self.start_ms + int(self.rng.random() * self._check_ms)
                self._push(first, _DriverTick(d))

    # -- the event loop ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Event]:
        heap = self._heap
        while True:
            at, _, item = heapq.heappop(heap)
            if at > LAST_SIMULATED_MS:
                # Trips end up to a day after their request: stop while every event is still valid.
                msg = f"Simulator: simulated time reached {at} ms, past the last simulated time {LAST_SIMULATED_MS}"
                raise SimulationEndError(msg)
            if isinstance(item, _DriverTick):
                ping = self._tick(at, item)
                if ping is not None:
                    yield ping
            elif isinstance(item, TripEnd):
                if item.driver >= 0:
                    self.fleet.release(item.driver, item.zone_index)
                yield item.event
            else:
                yield self._request(at)

    def _request(self, at: int) -> TripRequested:
        rng = self.rng
        hour = self._hour(at // HOUR_MS)
        cum = hour.city_cum_rates
        city = self.world.cities[bisect(cum, rng.random() * cum[-1])]
        pickup, dropoff = city.pick_zone(rng.random()), city.pick_zone(rng.random())
        # Straight line between zone centres, plus the way in and out of the zones.
        distance = round(ROAD_FACTOR * pickup.distance_km(dropoff) + 0.4 + rng.expovariate(1.0), 2)
        surge = self._surge.quote(pickup.index, at)
        riders = city.rider_ids
        self._trips += 1
        request = TripRequested(
            event_time=at,
            trip_id=f"{self._trip_prefix}{self._trips:08d}",
            rider_id=riders[int(len(riders) * rng.random() ** 2)],  # a few riders ride a lot
            country=city.country,
            city=city.id,
            pickup_zone=pickup.id,
            dropoff_zone=dropoff.id,
            distance_km=distance,
            surge=surge,
        )
        speed = 1.0
        for drift in self.config.drifts:
            if drift.city == city.id and at >= self.start_ms + drift.after_ms:
                speed *= drift.speed
        end = trip_outcome(request, city, pickup, dropoff, hour.local[city.index], self.fleet, self.rng, speed)
        self._push(end.event.event_time, end)
        self._schedule_arrival()
        return request

    def _tick(self, at: int, tick: _DriverTick) -> DriverPing | None:
        rng, fleet, d = self.rng, self.fleet, tick.driver
        city = self.world.cities[self.world.driver_city[d]]
        target = self._hour(at // HOUR_MS).target_online[city.index]
        online = fleet.online[city.index]
        status = fleet.status[d]
        if status == OFFLINE:
            # Start a shift with a probability that closes the gap to the target in ~one check.
            if target <= online:
                # Targets only change on the hour: no point in looking again before the next one.
                next_hour = (at // HOUR_MS + 1) * HOUR_MS
                self._push(next_hour + int(self._check_ms * rng.random()), tick)
                return None
            if rng.random() * (city.spec.drivers - online) >= target - online:
                self._push(at + int(self._check_ms * rng.uniform(0.8, 1.2)), tick)
                return None
            fleet.go_online(d, city.pick_zone(rng.random()).index)
        elif status == AVAILABLE:
            if online > target and rng.random() * online < online - target:
                fleet.go_offline(d)
                self._push(at + int(self._check_ms * rng.uniform(0.8, 1.2)), tick)
                return self._ping(at, d, OFFLINE)
            if rng.random() < 0.1:  # drift towards where the riders are
                fleet.move(d, city.pick_zone(rng.random()).index)
        self._push(at + int(self._ping_ms * rng.uniform(0.8, 1.2)), tick)
        return self._ping(at, d, fleet.status[d])

    def _ping(self, at: int, driver: int, status: int) -> DriverPing:
        zone = self.world.zones[self.fleet.zone[driver]]
        city = self.world.cities[zone.city_index]
        return DriverPing(
            event_time=at,
            driver_id=self.world.driver_ids[driver],
            country=city.country,
            city=city.id,
            zone=zone.id,
            status=STATUS_NAMES[status],
        )


def simulate(
    n_events: int,
    seed: int = 42,
    start_ms: int | None = None,
    *,
    world: World | None = None,
    config: SimConfig | None = None,
) -> Iterator[Event]:
    """Exactly `n_events` marketplace events from `start_ms` (default: now), sorted by event time.

    The same arguments always give the same events; see `Simulator` for an endless stream.
    """
    if n_events < 0:
        msg = f"n_events must be >= 0, got {n_events}"
        raise ValueError(msg)
    return islice(Simulator(seed, start_ms, world=world, config=config), n_events)
