"""Injected drift: from a moment of the simulation on, one city's traffic drives slower (or faster).

    >>> Drift("sao", 0.7, after_ms=600_000)  # `affresco simulate --drift "city=sao,speed=0.7,after=10m"`
    Drift(city='sao', speed=0.7, after_ms=600000)

A drift multiplies the city's driving speed by `speed` for every trip requested `after_ms` or
more after the simulation's start: the driving part of its ETA grows by 1/`speed` (the pickup
part does not). What a monitored model should notice, on that city's partition only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Drift"]


@dataclass(frozen=True)
class Drift:
    city: str
    speed: float
    after_ms: int

    def __post_init__(self) -> None:
        if not 0 < self.speed <= 10:
            msg = f"speed must be a factor in (0, 10], got {self.speed}"
            raise ValueError(msg)
        if self.after_ms < 0:
            msg = f"after must not be negative, got {self.after_ms} ms"
            raise ValueError(msg)
