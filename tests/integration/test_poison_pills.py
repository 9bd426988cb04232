"""No record can stop the stream processor: each class of bad record the issue found, written by a
non-Python client (kcat) between good records, is dead-lettered once with its reason — through a
kill -9 and a restart — while every good record, headerless or oddly spelled ones included, counts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from state.online import open_store
from streams.admin import TopicAdmin, TopicSpec
from streams.events import DeadLetter
from streams.producer import EventProducer
from streams.settings import KafkaSettings
from streams.sim import TRIPS_TOPIC, simulate, topic_for
from streams.topics import Topics
from tests.integration.helpers import read_all
from tests.integration.processor_helpers import T0, compile_groups, demo_group_docs, latest_times, write_yaml
from tests.reference import group_values_as_of

pytestmark = pytest.mark.integration

HOUR = 3_600_000
NOW = int(time.time() * 1000)


def completed(marker: str, **over: Any) -> dict[str, Any]:
    return {"event_time": T0 + 30 * 60_000, "event_type": "trip_completed", "trip_id": marker, "rider_id": "r-bad",
            "driver_id": "d-1", "country": "US", "city": "nyc", "pickup_zone": "nyc-01", "dropoff_zone": "nyc-02",
            "distance_km": 3.0, "requested_at": T0 + 10 * 60_000, "eta_s": 600.0, "fare": 12.5, **over}  # fmt: skip


def requested(marker: str, **over: Any) -> dict[str, Any]:
    return {"event_time": T0 + 40 * 60_000, "event_type": "trip_requested", "trip_id": marker, "rider_id": "r-odd",
            "country": "US", "city": "nyc", "pickup_zone": "nyc-01", "dropoff_zone": "nyc-03", "distance_km": 2.5,
            "surge": 1.0, **over}  # fmt: skip


def body(fields: dict[str, Any]) -> bytes:
    return orjson.dumps(fields)


TR, TC = [("event_type", b"trip_requested"), ("schema_version", b"1")], [("event_type", b"trip_completed")]

# (marker, value, headers, the dead-letter reason expected)
RECORDS: list[tuple[str, bytes, list[tuple[bytes | str, bytes]], str]] = [
    ("eta-1e308", body(completed("eta-1e308", eta_s=1e308)), TC, "validation_error"),
    ("fare-2e13", body(completed("fare-2e13", fare=2e13)), TC, "validation_error"),
    ("km-1e-300", body(completed("km-1e-300", distance_km=1e-300)), TC, "validation_error"),
    ("eta-1e400", body(completed("eta-1e400", eta_s=600.0)).replace(b"600.0", b"1e400"), TC, "malformed_json"),
    ("nan", body(requested("nan", surge=1.0)).replace(b'"surge":1.0', b'"surge":NaN'), TR, "malformed_json"),
    (
        "inf",
        body(requested("inf", distance_km=1.0)).replace(b'"distance_km":1.0', b'"distance_km":Infinity'),
        TR,
        "malformed_json",
    ),
    ("far-future", body(requested("far-future", event_time=NOW + 4 * HOUR)), TR, "future_event"),
    ("key-not-utf8", body(requested("key-not-utf8")), [*TR, (b"\xff\xfe", b"x")], "validation_error"),
    ("type-not-utf8", body(requested("type-not-utf8")), [("event_type", b"\xff")], "validation_error"),
    ("no-header-bogus", body({**requested("no-header-bogus"), "event_type": "bogus"}), [], "unknown_event_type"),
    ("bogus", body(requested("bogus")), [("event_type", b"bogus")], "unknown_event_type"),
    ("camel", body(requested("camel")), [("event_type", b"Trip_Requested")], "unknown_event_type"),
    ("empty-type", body(requested("empty-type")), [("event_type", b"")], "unknown_event_type"),
    (
        "version-2",
        body(requested("version-2")),
        [("event_type", b"trip_requested"), ("schema_version", b"2")],
        "unknown_schema_version",
    ),
    (
        "version-abc",
        body(requested("version-abc")),
        [("event_type", b"trip_requested"), ("schema_version", b"abc")],
        "unknown_schema_version",
    ),
    ("disagree", body(requested("disagree")), TC, "validation_error"),  # header says completed, body requested
    ("late", body(requested("late", event_time=T0)), TR, "late_event"),
]
# Good records a strict reader might have refused, written after the simulated hour (so not late).
END = T0 + 2 * HOUR
ODD: list[tuple[str, bytes, list[tuple[bytes | str, bytes]]]] = [
    ("no-header", body(requested("no-header", event_time=END)), []),
    ("no-version", body(requested("no-version", event_time=END + 60_000)), [("event_type", b"trip_requested")]),
    (
        "integral-float",
        body(requested("integral-float", event_time=END + 120_000)).replace(
            str(END + 120_000).encode(), f"{END + 120_000}.0".encode()
        ),
        TR,
    ),
]
# Accepted by the processor (its skew is 3 h here) but refused by the broker (1 h) as a feature update's
# timestamp: dead-lettered as output_rejected. Last of its partition: it makes everything after it late.
REFUSED = ("two-hours-ahead", body(requested("two-hours-ahead", event_time=NOW + 2 * HOUR, pickup_zone="zz-ahead")))


def kcat(
    settings: KafkaSettings, topic: str, partition: int, value: bytes, headers: list[tuple[bytes | str, bytes]]
) -> None:
    """Produce one record as a non-Python client would (header keys and values as raw bytes)."""
    args: list[bytes | str] = ["kcat", "-P", "-b", settings.bootstrap_servers, "-t", topic, "-p", str(partition),
                               "-k", "bad", "-D", "\x01"]  # fmt: skip
    for name, raw in headers:
        args += ["-H", (name.encode() if isinstance(name, str) else name) + b"=" + raw]
    subprocess.run(args, input=value, check=True, timeout=30)


def test_every_bad_record_is_dead_lettered_once_and_every_good_one_counts(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    assert shutil.which("kcat"), "kcat is needed (the Makefile installs it: apt-get install -y kcat)"
    trips, pings = unique("trips"), unique("pings")
    TopicAdmin(kafka_settings).ensure([TopicSpec(t, partitions=3, retention_ms=-1) for t in (trips, pings)])
    events = list(simulate(6000, seed=31, start_ms=T0))
    size = len(events) // (len(RECORDS) + 1) + 1
    batches = [events[i : i + size] for i in range(0, len(events), size)]  # consecutive stretches of time
    rename = {TRIPS_TOPIC: trips}
    good: dict[str, list[dict[str, Any]]] = defaultdict(list)  # event type -> fields of the good events

    def produce(first: int, last: int) -> None:
        for i in range(first, last):
            with EventProducer(kafka_settings) as producer:
                for e in batches[i]:
                    producer.send(rename.get(topic_for(e), pings), e)
                    good[e.type_name()].append(dict(e.__dict__))
            if i < len(RECORDS):  # each bad record alone, between good records of its partition
                _, value, headers, _ = RECORDS[i]
                kcat(kafka_settings, trips, i % 3, value, headers)

    docs = demo_group_docs(trips, pings)
    groups = compile_groups(docs)
    definitions = write_yaml(docs, tmp_path / "defs")
    env = {**os.environ, "AFFRESCO_DATA_DIR": str(tmp_path / "data"), "AFFRESCO_KAFKA_MAX_FUTURE_MS": str(3 * HOUR),
           "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}  # fmt: skip
    command = [sys.executable, "-m", "affresco.cli", "process", "run", *(g.name for g in groups), "-d",
               str(definitions), "--epoch", "0.2", "--batch-size", "500"]  # fmt: skip
    # Half the records, a processor that dies by kill -9, then the rest for the restarted one.
    half = len(batches) // 2
    produce(0, half)
    crashing = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4)
    crashing.send_signal(signal.SIGKILL)
    assert crashing.wait(30) == -signal.SIGKILL  # still running: no record stopped it
    produce(half, len(batches))
    assert max(e.event_time for e in events) < END
    for i, (marker, value, headers) in enumerate(ODD):
        kcat(kafka_settings, trips, i % 3, value, headers)
        good["trip_requested"].append({**requested(marker), "event_time": int(orjson.loads(value)["event_time"])})
    kcat(kafka_settings, trips, 0, REFUSED[1], TR)
    good["trip_requested"].append(orjson.loads(REFUSED[1]))
    final = subprocess.run([*command, "--until-idle"], env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])

    # Dead letters: at-least-once across the kill, but one per (source position, group) — and exactly
    # the bad records, each with its reason.
    letters = [DeadLetter.model_validate_json(m.value() or b"") for m in read_all(Topics().dlq(trips), kafka_settings)]
    by_key: dict[tuple[Any, ...], set[tuple[str, str | None]]] = defaultdict(set)
    for d in letters:
        by_key[(d.source_topic, d.source_partition, d.source_offset, d.group)].add((d.reason, d.step))
    positions = _positions(kafka_settings, trips)
    expected = {marker: reason for marker, _, _, reason in RECORDS} | {REFUSED[0]: "output_rejected"}
    found = {}
    strays = [d for d in letters if (d.source_partition, d.source_offset) not in positions]
    assert not strays, [(d.reason, d.group, d.error[:300]) for d in strays[:3]]
    for (topic, partition, offset, _), reasons in by_key.items():
        assert topic == trips and len(reasons) == 1, reasons
        found[positions[(partition, offset)]] = next(iter(reasons))[0]
    assert found == expected
    refused = [d for d in letters if d.reason == "output_rejected"]
    assert refused and all("Invalid timestamp" in d.error or "INVALID_TIMESTAMP" in d.error for d in refused)
    assert summary["topics"][trips]["dead_lettered"]  # the restarted run met bad records too, and went on

    # Every good record counts: the online values equal the definition over the good events.
    with open_store("rocksdb", path=tmp_path / "data" / "online" / "rocksdb", access="read_only") as store:
        for group in groups:
            rows = good[group.event_type]
            latest = latest_times(group, rows)
            records = store.get_many([(group.ref, e) for e in latest], now_ms=0)
            for entity, (u, n) in latest.items():
                record = records[(group.ref, entity)]
                assert record is not None and (record.event_time, record.revision) == (u, n), (group.ref, entity)
                assert record.values == group_values_as_of(group, rows, u)[entity], (group.ref, entity)


def _positions(settings: KafkaSettings, topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) -> marker of the records written by kcat."""
    markers = [marker for marker, *_ in RECORDS] + [marker for marker, *_ in ODD] + [REFUSED[0]]
    out = {}
    for m in read_all(topic, settings):
        value = m.value() or b""
        for marker in markers:
            if f'"trip_id":"{marker}"'.encode() in value:
                out[(m.partition() or 0, m.offset() or 0)] = marker
    return out
