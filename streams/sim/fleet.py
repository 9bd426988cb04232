"""Where every driver is and what they are doing; free drivers pooled per zone for O(1) dispatch."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final, Literal

from streams.sim.world import World, Zone

__all__ = ["AVAILABLE", "MAX_DISPATCH_ZONES", "OFFLINE", "ON_TRIP", "STATUS_NAMES", "Dispatch", "Fleet", "Status"]

OFFLINE: Final = 0
AVAILABLE: Final = 1
ON_TRIP: Final = 2
Status = Literal["offline", "available", "on_trip"]
STATUS_NAMES: Final[tuple[Status, Status, Status]] = ("offline", "available", "on_trip")

# A request is only matched with a driver in the pickup zone or the next nearest ones; beyond that
# the pickup would be too far and the platform gives up ("no driver available").
MAX_DISPATCH_ZONES: Final = 4


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A driver matched to a request; `rank` 0 means the driver was in the pickup zone itself."""

    driver: int
    rank: int


class Fleet:
    """Status, zone and per-city online counts of every driver of a world.

    Drivers are indices into `World.driver_ids`. Available drivers sit in one list per zone; a driver
    remembers its slot so that taking it out is a swap with the last element (O(1), and independent
    of set iteration order, which keeps runs deterministic).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        n = len(world.driver_ids)
        self.status = [OFFLINE] * n
        self.zone = [world.cities[c].zones[0].index for c in world.driver_city]
        self.online = [0] * len(world.cities)  # available + on trip, per city
        self._pools: list[list[int]] = [[] for _ in world.zones]
        self._slot = [-1] * n

    # -- pools -----------------------------------------------------------------------------------
    def available_in(self, zone_index: int) -> int:
        """How many drivers are free in a zone right now."""
        return len(self._pools[zone_index])

    def _add(self, driver: int, zone_index: int) -> None:
        pool = self._pools[zone_index]
        self._slot[driver] = len(pool)
        pool.append(driver)
        self.zone[driver] = zone_index

    def _remove(self, driver: int) -> None:
        pool = self._pools[self.zone[driver]]
        slot = self._slot[driver]
        last = pool.pop()
        if last != driver:
            pool[slot] = last
            self._slot[last] = slot
        self._slot[driver] = -1

    # -- transitions -----------------------------------------------------------------------------
    def go_online(self, driver: int, zone_index: int) -> None:
        """An offline driver starts a shift, free, in a zone."""
        self.status[driver] = AVAILABLE
        self.online[self.world.driver_city[driver]] += 1
        self._add(driver, zone_index)

    def go_offline(self, driver: int) -> None:
        """A free driver ends the shift."""
        self._remove(driver)
        self.status[driver] = OFFLINE
        self.online[self.world.driver_city[driver]] -= 1

    def move(self, driver: int, zone_index: int) -> None:
        """A free driver repositions to another zone of the city."""
        self._remove(driver)
        self._add(driver, zone_index)

    def dispatch(self, pickup: Zone, rng: random.Random) -> Dispatch | None:
        """Match the request with a random free driver from the nearest zone that has one."""
        for rank, zone_index in enumerate(pickup.nearest[:MAX_DISPATCH_ZONES]):
            pool = self._pools[zone_index]
            if pool:
                driver = pool[int(rng.random() * len(pool))]
                self._remove(driver)
                self.status[driver] = ON_TRIP
                self.zone[driver] = pickup.index  # driving to the pickup: reports from there
                return Dispatch(driver, rank)
        return None

    def release(self, driver: int, zone_index: int) -> None:
        """A driver finished (or lost) a trip and is free again in `zone_index`."""
        self.status[driver] = AVAILABLE
        self._add(driver, zone_index)
