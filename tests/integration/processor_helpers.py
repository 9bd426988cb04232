"""Building small feature groups on fresh topics, feeding them simulated events, reading results."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from processors.definitions import FeatureGroup, compile_spec
from state.online import OnlineRecord, open_store
from streams.admin import TopicAdmin, TopicSpec
from streams.events.base import Event
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.sim import DRIVER_PINGS_TOPIC, TRIPS_TOPIC, simulate, topic_for
from tests.integration.helpers import read_all

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def group_docs(trips: str, pings: str) -> list[dict[str, Any]]:
    """Two demo-like groups reading `trips` and `pings` (fresh topics per test).

    Group names carry the topic's random suffix, so each test's `affresco.features.<group>` topic
    is its own too.
    """
    suffix = trips.rsplit(".", 1)[-1]
    common = {"version": 1, "owner": "tests", "description": "test", "ttl": "3650d", "allowed_lateness": "5m"}
    return [
        {
            **common, "group": f"zone_demand_{suffix}", "entity": "zone", "key": "pickup_zone",
            "source": {"topic": trips, "event_type": "trip_requested"},
            "features": [
                {"name": "requests_10m", "agg": "count", "window": "10m"},
                {"name": "mean_km_1h", "agg": "mean", "expr": "distance_km", "window": "1h"},
                {"name": "max_surge_1h", "agg": "max", "expr": "surge", "window": "1h"},
                {"name": "riders_1h", "agg": "approx_distinct", "expr": "rider_id", "window": "1h"},
                {"name": "last_dropoff", "expr": "dropoff_zone"},
            ],
        },
        {
            **common, "group": f"zone_supply_{suffix}", "entity": "zone", "key": "zone",
            "source": {"topic": pings, "event_type": "driver_ping", "filter": "status == 'available'"},
            "features": [
                {"name": "available_10m", "agg": "count", "window": "10m"},
                {"name": "drivers_1h", "agg": "approx_distinct", "expr": "driver_id", "window": "1h"},
            ],
        },
    ]  # fmt: skip


DEMO_FEATURES = Path(__file__).resolve().parents[2] / "processors" / "features" / "rides"


def demo_group_docs(trips: str, pings: str) -> list[dict[str, Any]]:
    """The demo's own feature groups (processors/features/rides), reading the fresh topics instead.

    Every demo feature, as the demo defines it; names carry the topics' suffix, TTLs are long (the
    simulated history starts in 2026-01).
    """
    suffix = trips.rsplit(".", 1)[-1]
    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    docs = []
    for path in sorted(DEMO_FEATURES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        doc["group"] = f"{doc['group']}_{suffix}"
        doc["source"]["topic"] = rename[doc["source"]["topic"]]
        doc["ttl"] = "3650d"
        docs.append(doc)
    return docs


def compile_groups(docs: list[dict[str, Any]]) -> list[FeatureGroup]:
    out = []
    for doc in docs:
        group, problems = compile_spec(doc, "test")
        assert group is not None, problems
        out.append(group)
    return out


def write_yaml(docs: list[dict[str, Any]], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        (directory / f"{doc['group']}.yaml").write_text(yaml.safe_dump(doc))
    return directory


def produce_simulation(
    settings: KafkaSettings,
    trips: str,
    pings: str,
    n: int,
    seed: int = 5,
    partitions: int = 3,
    *,
    delayed: float = 0.0,
    max_delay_ms: int = 20 * 60_000,
) -> list[Event]:
    """Simulated events into the fresh topics (record timestamps = event times).

    `delayed`: the share of events sent late, after events up to `max_delay_ms` newer — with the
    demo's 5-minute lateness some of them are merely out of order, the others late.
    """
    TopicAdmin(settings).ensure([TopicSpec(t, partitions=partitions, retention_ms=-1) for t in (trips, pings)])
    rename = {TRIPS_TOPIC: trips, DRIVER_PINGS_TOPIC: pings}
    events = list(simulate(n, seed=seed, start_ms=T0))
    if delayed:
        rnd = random.Random(seed)
        sent_at = [e.event_time + (rnd.randrange(max_delay_ms) if rnd.random() < delayed else 0) for e in events]
        events = [e for _, _, e in sorted(zip(sent_at, range(len(events)), events, strict=True))]
    with EventProducer(settings) as producer:
        for e in events:
            producer.send(rename[topic_for(e)], e)
    return events


@dataclass(frozen=True)
class Judged:
    """A group's source events as the definition judges them, from the log as it is in Kafka."""

    accepted: list[dict[str, Any]]  # fields of the accepted events
    late: dict[tuple[int, int], dict[str, Any]]  # (partition, offset) -> fields of the late ones


def judge(settings: KafkaSettings, group: FeatureGroup) -> Judged:
    """Lateness by its definition: older than the greatest earlier event time of its type in its
    partition, minus the allowed lateness. (The filter is applied later, by the reference.)"""
    by_partition: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for m in read_all(group.topic, settings):
        if dict(m.headers() or []).get("event_type") != group.event_type.encode():
            continue
        fields = orjson.loads(m.value() or b"")
        by_partition.setdefault(m.partition() or 0, []).append((m.offset() or 0, fields))
    accepted: list[dict[str, Any]] = []
    late: dict[tuple[int, int], dict[str, Any]] = {}
    for partition, events in by_partition.items():
        seen = -1
        for offset, fields in sorted(events, key=lambda e: e[0]):
            t = fields["event_time"]
            if t < seen - group.lateness_ms:
                late[(partition, offset)] = fields
            else:
                accepted.append(fields)
            seen = max(seen, t)
    return Judged(accepted, late)


def fields_of(events: list[Event], event_type: str) -> list[dict[str, Any]]:
    return [dict(e.__dict__) for e in events if e.type_name() == event_type]


def latest_times(group: FeatureGroup, rows: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per entity: (greatest event time, number of events) after the group's filter."""
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        if group.filter is not None and group.filter.evaluate(r) is not True:
            continue
        key = str(group.key.evaluate(r))
        t, n = out.get(key, (-1, 0))
        out[key] = (max(t, r["event_time"]), n + 1)
    return out


StoreFactory = Callable[[], Any]


def read_records(path: Path, keys: list[tuple[str, str]]) -> dict[tuple[str, str], OnlineRecord | None]:
    """Records of a RocksDB online store, opened read-only (another process may own it)."""
    with open_store("rocksdb", path=path, access="read_only") as store:
        return store.get_many(keys)
