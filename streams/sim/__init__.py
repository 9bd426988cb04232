"""A ride-hailing marketplace simulator: deterministic, event-time-ordered domain events with a known
ETA ground truth (see `streams.sim.eta`).

>>> from streams.sim import simulate, topic_for
>>> events = list(simulate(100, seed=42, start_ms=1_714_550_400_000))
>>> len(events), sorted({topic_for(e) for e in events})
(100, ['rides.driver_pings', 'rides.trips'])
"""

from streams.sim.eta import ETA_NOISE_SIGMA, ground_truth_eta_s, oracle_eta_s
from streams.sim.generator import LAST_START_MS, SimConfig, SimulationEndError, Simulator, simulate
from streams.sim.profiles import LocalTime, local_time
from streams.sim.topics import DRIVER_PINGS_TOPIC, TRIPS_TOPIC, domain_topic_specs, topic_for
from streams.sim.world import City, Country, FareTable, World, Zone, default_world

__all__ = [
    "DRIVER_PINGS_TOPIC",
    "ETA_NOISE_SIGMA",
    "LAST_START_MS",
    "TRIPS_TOPIC",
    "City",
    "Country",
    "FareTable",
    "LocalTime",
    "SimConfig",
    "SimulationEndError",
    "Simulator",
    "World",
    "Zone",
    "default_world",
    "domain_topic_specs",
    "ground_truth_eta_s",
    "local_time",
    "oracle_eta_s",
    "simulate",
    "topic_for",
]
