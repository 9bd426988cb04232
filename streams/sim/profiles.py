"""Hour-of-day and day-of-week profiles of the simulated marketplace, and local time of a city.

All profiles are indexed by the *local* hour (0-23) and weekday (Monday = 0) of a city: rush hour in
New York is 12:00-14:00 UTC. Cities have fixed UTC offsets (no daylight saving) so that every local
hour boundary is also a UTC hour boundary, which keeps the arrival process piecewise constant per
UTC hour.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONGESTION_WEEKDAY",
    "CONGESTION_WEEKEND",
    "DAY_MS",
    "DEMAND_BY_WEEKDAY",
    "DEMAND_WEEKDAY",
    "DEMAND_WEEKEND",
    "HOUR_MS",
    "SUPPLY_WEEKDAY",
    "SUPPLY_WEEKEND",
    "LocalTime",
    "congestion",
    "demand_factor",
    "local_time",
    "supply_factor",
]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# 1970-01-01 (epoch day 0) was a Thursday; with Monday = 0 that is weekday 3.
_EPOCH_WEEKDAY = 3


@dataclass(frozen=True, slots=True)
class LocalTime:
    """Local wall-clock hour and weekday of an instant in a city."""

    hour: int
    weekday: int  # Monday = 0 ... Sunday = 6, as `datetime.weekday()`

    @property
    def weekend(self) -> bool:
        return self.weekday >= 5


def local_time(event_time_ms: int, utc_offset_h: int) -> LocalTime:
    """Local hour and weekday of `event_time_ms` (UTC epoch ms) at a fixed UTC offset.

    >>> local_time(0, -5)  # 1970-01-01 00:00 UTC is Wednesday 19:00 in New York
    LocalTime(hour=19, weekday=2)
    """
    days, rem = divmod(event_time_ms + utc_offset_h * HOUR_MS, DAY_MS)
    return LocalTime(hour=rem // HOUR_MS, weekday=(days + _EPOCH_WEEKDAY) % 7)


# Travel-time multiplier (1.0 = ordinary daytime traffic): rush hours 7-9 and 17-19 on weekdays,
# free-flowing nights, a flatter weekend with a busy afternoon and evening.
# fmt: off
CONGESTION_WEEKDAY: tuple[float, ...] = (
    0.80, 0.78, 0.78, 0.78, 0.80, 0.85,  # 00-05
    0.95, 1.35, 1.55, 1.35, 1.05, 1.00,  # 06-11
    1.05, 1.05, 1.00, 1.05, 1.15, 1.45,  # 12-17
    1.60, 1.40, 1.10, 0.95, 0.90, 0.85,  # 18-23
)
CONGESTION_WEEKEND: tuple[float, ...] = (
    0.85, 0.85, 0.82, 0.80, 0.78, 0.78,  # 00-05
    0.80, 0.82, 0.85, 0.90, 0.98, 1.05,  # 06-11
    1.10, 1.10, 1.08, 1.05, 1.05, 1.08,  # 12-17
    1.10, 1.05, 1.00, 0.95, 0.92, 0.88,  # 18-23
)

# Trip requests relative to a city's mean hourly rate: commuting peaks on weekdays, late nights on
# weekends.
DEMAND_WEEKDAY: tuple[float, ...] = (
    0.30, 0.18, 0.12, 0.10, 0.12, 0.30,  # 00-05
    0.65, 1.45, 1.85, 1.35, 0.95, 0.95,  # 06-11
    1.10, 1.05, 0.95, 1.00, 1.25, 1.75,  # 12-17
    1.95, 1.45, 1.15, 1.00, 0.85, 0.60,  # 18-23
)
DEMAND_WEEKEND: tuple[float, ...] = (
    1.05, 0.95, 0.80, 0.50, 0.25, 0.15,  # 00-05
    0.15, 0.25, 0.40, 0.60, 0.85, 1.00,  # 06-11
    1.10, 1.10, 1.00, 1.00, 1.00, 1.05,  # 12-17
    1.15, 1.25, 1.35, 1.40, 1.35, 1.20,  # 18-23
)
# Whole-day multiplier, Monday first: Friday is the busiest day, Sunday the quietest.
DEMAND_BY_WEEKDAY: tuple[float, ...] = (0.95, 1.00, 1.00, 1.05, 1.20, 0.90, 0.70)

# Share of a city's drivers who want to be online. Supply follows demand but lags its peaks a little,
# which is what makes surge appear at rush hour.
SUPPLY_WEEKDAY: tuple[float, ...] = (
    0.18, 0.12, 0.10, 0.10, 0.12, 0.22,  # 00-05
    0.45, 0.70, 0.78, 0.70, 0.55, 0.55,  # 06-11
    0.60, 0.58, 0.55, 0.58, 0.66, 0.78,  # 12-17
    0.80, 0.70, 0.60, 0.52, 0.45, 0.30,  # 18-23
)
SUPPLY_WEEKEND: tuple[float, ...] = (
    0.50, 0.45, 0.38, 0.25, 0.15, 0.10,  # 00-05
    0.12, 0.18, 0.28, 0.40, 0.52, 0.58,  # 06-11
    0.62, 0.62, 0.58, 0.58, 0.58, 0.60,  # 12-17
    0.64, 0.70, 0.74, 0.76, 0.72, 0.62,  # 18-23
)
# fmt: on


def congestion(local: LocalTime) -> float:
    """Travel-time multiplier at a local hour (weekday and weekend tables differ)."""
    return (CONGESTION_WEEKEND if local.weekend else CONGESTION_WEEKDAY)[local.hour]


def demand_factor(local: LocalTime) -> float:
    """Trip-request intensity relative to the city's mean rate, at a local hour and weekday."""
    hourly = DEMAND_WEEKEND if local.weekend else DEMAND_WEEKDAY
    return hourly[local.hour] * DEMAND_BY_WEEKDAY[local.weekday]


def supply_factor(local: LocalTime) -> float:
    """Share of a city's drivers who want to be online at a local hour."""
    return (SUPPLY_WEEKEND if local.weekend else SUPPLY_WEEKDAY)[local.hour]
