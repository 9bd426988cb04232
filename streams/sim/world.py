"""The simulated marketplace: countries → cities → zones, with riders and drivers living in a city.

The world is the same for every simulation seed (it is built from a fixed internal seed), so the
ground truth a model learns from one run holds for any other run: the seed only changes *which*
trips happen, never the rules. Money is in each city's own currency units (no conversion).

Ids are stable and global: zones `sfo-03`, riders `r-000123`, drivers `d-00042`; rider and driver
numbers are allocated city by city, in the order of `CITY_SPECS`.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass
from functools import cache
from itertools import accumulate

__all__ = ["CITY_SPECS", "City", "CitySpec", "Country", "FareTable", "World", "Zone", "default_world"]

_WORLD_SEED = 20170806  # fixed: the world's layout must not depend on the simulation seed
_COUNTRY_NAMES = {"US": "United States", "GB": "United Kingdom", "BR": "Brazil"}


@dataclass(frozen=True, slots=True)
class FareTable:
    """A city's tariff: `max(minimum, base + per_km·km + per_minute·min) · surge`."""

    base: float
    per_km: float
    per_minute: float
    minimum: float

    def fare(self, distance_km: float, duration_s: float, surge: float = 1.0) -> float:
        """The fare of a trip, rounded to cents.

        >>> FareTable(base=2.0, per_km=1.0, per_minute=0.5, minimum=5.0).fare(3.0, 600.0, surge=1.5)
        15.0
        """
        metered = self.base + self.per_km * distance_km + self.per_minute * duration_s / 60.0
        return round(max(self.minimum, metered) * surge, 2)


@dataclass(frozen=True, slots=True)
class CitySpec:
    """The hand-written parameters of one city (everything else is derived from them)."""

    id: str
    name: str
    country: str
    utc_offset_h: int  # fixed offset, no daylight saving
    base_speed_kmh: float  # average driving speed in ordinary daytime traffic
    pickup_s: float  # typical wait for a driver to arrive when there is no surge
    eta_effect: float  # everything else that makes trips here slower (parking, one-way streets…)
    fare: FareTable
    trips_per_hour: float  # mean trip-request rate over a week
    drivers: int
    riders: int
    zones: int
    radius_km: float


CITY_SPECS: tuple[CitySpec, ...] = (
    CitySpec("sfo", "San Francisco", "US", -8, 26.0, 200.0, 1.00, FareTable(2.5, 1.20, 0.35, 8.0),
             200.0, 280, 6_000, 14, 4.0),
    CitySpec("nyc", "New York", "US", -5, 19.0, 240.0, 1.15, FareTable(3.0, 1.60, 0.50, 10.0),
             320.0, 450, 10_000, 20, 5.0),
    CitySpec("aus", "Austin", "US", -6, 34.0, 210.0, 0.92, FareTable(2.0, 1.00, 0.25, 7.0),
             90.0, 130, 3_000, 8, 5.0),
    CitySpec("lon", "London", "GB", 0, 21.0, 230.0, 1.10, FareTable(2.5, 1.25, 0.30, 6.0),
             300.0, 420, 9_000, 18, 5.5),
    CitySpec("man", "Manchester", "GB", 0, 28.0, 190.0, 0.95, FareTable(2.0, 1.00, 0.20, 5.0),
             80.0, 115, 2_500, 9, 4.0),
    CitySpec("sao", "São Paulo", "BR", -3, 17.0, 260.0, 1.20, FareTable(4.0, 1.50, 0.30, 7.0),
             300.0, 430, 9_000, 16, 6.0),
    CitySpec("rio", "Rio de Janeiro", "BR", -3, 24.0, 220.0, 1.05, FareTable(3.5, 1.40, 0.25, 6.0),
             150.0, 210, 5_000, 12, 5.0),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Zone:
    """A pickup/drop-off area of a city, with its position and how busy and how slow it is."""

    id: str
    index: int  # position in `World.zones`
    city_index: int  # position in `World.cities`
    x_km: float
    y_km: float
    demand_weight: float  # share of the city's requests starting (or ending) here, unnormalised
    eta_effect: float  # local slowness (narrow streets, airport loops…), multiplies the ETA
    nearest: tuple[int, ...]  # zone indices of the same city by distance, this zone first

    def distance_km(self, other: Zone) -> float:
        """Straight-line distance between zone centres."""
        return math.hypot(self.x_km - other.x_km, self.y_km - other.y_km)


@dataclass(frozen=True, slots=True)
class City:
    """A city of the world: its `CitySpec` plus its zones, riders and drivers."""

    spec: CitySpec
    index: int
    zones: tuple[Zone, ...]
    zone_cum_weights: tuple[float, ...]  # for `bisect`: weighted zone choice in O(log n)
    rider_ids: tuple[str, ...]
    first_driver: int  # drivers of this city are `World.driver_ids[first_driver:first_driver+n]`

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def country(self) -> str:
        return self.spec.country

    def pick_zone(self, u: float) -> Zone:
        """The zone at quantile `u` ∈ [0, 1) of the demand weights."""
        return self.zones[bisect(self.zone_cum_weights, u * self.zone_cum_weights[-1])]


@dataclass(frozen=True, slots=True)
class Country:
    code: str  # ISO 3166-1 alpha-2
    name: str
    cities: tuple[City, ...]


@dataclass(frozen=True, slots=True)
class World:
    """Every country, city, zone, rider and driver; look-ups by id."""

    countries: tuple[Country, ...]
    cities: tuple[City, ...]
    zones: tuple[Zone, ...]
    driver_ids: tuple[str, ...]
    driver_city: tuple[int, ...]  # city index of each driver

    def city(self, city_id: str) -> City:
        """The city with this id; `KeyError` naming the known ids otherwise."""
        for city in self.cities:
            if city.id == city_id:
                return city
        known = ", ".join(c.id for c in self.cities)
        msg = f"unknown city {city_id!r}; expected one of: {known}"
        raise KeyError(msg)

    def zone(self, zone_id: str) -> Zone:
        """The zone with this id (`<city>-NN`); `KeyError` otherwise."""
        city_id, _, number = zone_id.rpartition("-")
        city = self.city(city_id)
        if number.isdigit() and 1 <= int(number) <= len(city.zones):
            return city.zones[int(number) - 1]
        msg = f"unknown zone {zone_id!r}; {city_id} has zones {city.zones[0].id}..{city.zones[-1].id}"
        raise KeyError(msg)


def _build_zones(spec: CitySpec, city_index: int, first_index: int, rng: random.Random) -> tuple[Zone, ...]:
    points: list[tuple[float, float]] = []
    for _ in range(spec.zones):
        # Uniform in the disc; zone 1 is downtown at the centre.
        r = spec.radius_km * math.sqrt(rng.random()) if points else 0.0
        a = rng.uniform(0.0, 2.0 * math.pi)
        points.append((r * math.cos(a), r * math.sin(a)))
    zones = []
    for i, (x, y) in enumerate(points):
        centrality = math.exp(-1.5 * math.hypot(x, y) / spec.radius_km)  # busier downtown
        order = sorted(range(len(points)), key=lambda j: (math.hypot(points[j][0] - x, points[j][1] - y), j))
        zones.append(
            Zone(
                id=f"{spec.id}-{i + 1:02d}",
                index=first_index + i,
                city_index=city_index,
                x_km=round(x, 3),
                y_km=round(y, 3),
                demand_weight=round(centrality * rng.lognormvariate(0.0, 0.5), 4),
                eta_effect=round(min(1.3, max(0.8, rng.lognormvariate(0.0, 0.12))), 3),
                nearest=tuple(first_index + j for j in order),
            )
        )
    return tuple(zones)


@cache
def default_world() -> World:
    """The world of `CITY_SPECS` (built once, then shared: it is immutable)."""
    rng = random.Random(_WORLD_SEED)
    cities: list[City] = []
    zones: list[Zone] = []
    driver_ids: list[str] = []
    driver_city: list[int] = []
    next_rider = 1
    for index, spec in enumerate(CITY_SPECS):
        city_zones = _build_zones(spec, index, len(zones), rng)
        zones.extend(city_zones)
        riders = tuple(f"r-{n:06d}" for n in range(next_rider, next_rider + spec.riders))
        next_rider += spec.riders
        first_driver = len(driver_ids)
        driver_ids.extend(f"d-{n:05d}" for n in range(first_driver + 1, first_driver + spec.drivers + 1))
        driver_city.extend([index] * spec.drivers)
        cum = tuple(accumulate(z.demand_weight for z in city_zones))
        cities.append(City(spec, index, city_zones, cum, riders, first_driver))
    countries = tuple(
        Country(code, _COUNTRY_NAMES[code], tuple(c for c in cities if c.country == code))
        for code in dict.fromkeys(s.country for s in CITY_SPECS)
    )
    return World(countries, tuple(cities), tuple(zones), tuple(driver_ids), tuple(driver_city))
