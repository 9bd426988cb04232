"""The offline history is the value as of its time, even when source partitions are read far out of step.

Partition 1 of the source topic is written hours after partition 0: the stream processor reads
partition 0 far ahead, then partition 1's older events. Every row the processor writes, and every
row backfills from Kafka and from the archive write, must equal the definition's value as of its
time, recomputed from the source events (tests/reference.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from confluent_kafka import Producer

from backfill import BackfillJob, run_backfill
from processors.engine import HOUR_MS
from state.online import open_store
from streams.admin import TopicAdmin, TopicSpec
from streams.events.base import Event
from streams.producer import event_headers
from streams.settings import KafkaSettings
from streams.sim import simulate
from tests.integration.processor_helpers import T0, compile_groups, group_docs, judge, write_yaml
from tests.reference import group_values_as_of

pytestmark = pytest.mark.integration


def _produce(settings: KafkaSettings, topic: str, events: list[tuple[int, Event]]) -> None:
    producer = Producer(settings.client_config() | {"enable.idempotence": True, "acks": "all"})
    for partition, e in events:
        producer.produce(
            topic, e.model_dump_json().encode(), key=e.key(), partition=partition,
            headers=event_headers(type(e)), timestamp=e.event_time,
        )  # fmt: skip
    assert producer.flush(30) == 0


def _rows(root: Path, group: Any, written_by: str) -> list[dict[str, Any]]:
    base = root / group.name / f"v{group.version}"
    if not base.is_dir():
        return []
    table = ds.dataset(base, format="parquet").to_table()
    if table.num_rows == 0:  # folders made, no file renamed into place yet
        return []
    return table.filter(pc.equal(table["written_by"], written_by)).to_pylist()


def _assert_exact(group: Any, accepted: list[dict[str, Any]], rows: list[dict[str, Any]], source: str = "") -> None:
    by_entity: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in accepted:
        if group.filter is None or group.filter.evaluate(f) is True:
            by_entity[str(group.key.evaluate(f))].append(f)
    assert rows
    for row in rows:
        entity, t = row["entity_key"], row["event_time"]
        expected = group_values_as_of(group, by_entity[entity], t)[entity]
        assert {k: row[k] for k in expected} == expected, (row["written_by"], source, entity, t)
        assert row["revision"] == sum(1 for f in by_entity[entity] if f["event_time"] <= t)


def test_history_rows_are_exact_with_partitions_read_hours_out_of_step(
    kafka_settings: KafkaSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    trips, pings = unique("trips"), unique("pings")
    TopicAdmin(kafka_settings).ensure([TopicSpec(t, partitions=2, retention_ms=-1) for t in (trips, pings)])
    requests = [e for e in simulate(14_000, seed=12, start_ms=T0) if e.type_name() == "trip_requested"]
    span = (requests[-1].event_time - requests[0].event_time) / HOUR_MS
    assert 2 < span < 12  # hours apart, under the history grace of 12 h: nothing is forced
    ahead = [(0, e) for e in requests[1::2]]
    behind = [(1, e) for e in requests[0::2]]
    [group] = [g for g in compile_groups(group_docs(trips, pings)) if g.topic == trips]
    definitions = write_yaml([d for d in group_docs(trips, pings) if d["source"]["topic"] == trips], tmp_path / "d")
    env = {**os.environ, "AFFRESCO_DATA_DIR": str(tmp_path / "data"),
           "AFFRESCO_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}  # fmt: skip
    command = [sys.executable, "-m", "affresco.cli", "process", "run", group.name, "-d", str(definitions),
               "--epoch", "0.2"]  # fmt: skip

    # Partition 0's hours first (and partition 1's first event, so there is a watermark at all).
    _produce(kafka_settings, trips, [*ahead, behind[0]])
    log = (tmp_path / "processor.log").open("wb")
    processor = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        time.sleep(6)  # it reads partition 0 to its end; the history waits for partition 1
        offline = tmp_path / "data" / "offline"
        assert not _rows(offline, group, "stream")
        _produce(kafka_settings, trips, behind[1:])  # hours behind what was read
        judged = judge(kafka_settings, group)
        hours = {(e.pickup_zone, e.event_time // HOUR_MS) for _, e in ahead + behind}  # type: ignore[attr-defined]
        last_hour = max(e.event_time for _, e in ahead + behind) // HOUR_MS
        written: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every hour the watermark has passed: all but the last
            written = _rows(offline, group, "stream")
            if len({(r["entity_key"], r["event_time"] // HOUR_MS) for r in written}) >= len(
                [h for h in hours if h[1] < last_hour]
            ):
                break
            time.sleep(0.5)
    finally:
        processor.send_signal(signal.SIGKILL)
        processor.wait(30)
        log.close()
    assert not judged.late
    _assert_exact(group, judged.accepted, written)
    assert {(r["entity_key"], r["event_time"] // HOUR_MS) for r in written} >= {h for h in hours if h[1] < last_hour}
    # The killed processor's last epoch was not archived yet: a restart to the end archives it.
    finished = subprocess.run([*command, "--until-idle"], env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]

    # Backfills of the same log, from Kafka and from the archive the processor wrote: exact as well.
    for source, root in (("kafka", tmp_path / "kafka-offline"), ("archive", offline)):
        job = BackfillJob(group, source, T0, T0 + 24 * HOUR_MS, root, tmp_path / f"cp-{source}", chunk_size=300)  # type: ignore[arg-type]
        db = tmp_path / f"db-{source}"
        run_backfill(job, kafka_settings, lambda db=db: open_store("rocksdb", path=db))  # type: ignore[misc]
        rows = _rows(root, group, "backfill")
        _assert_exact(group, judged.accepted, rows, source)
        assert {(r["entity_key"], r["event_time"] // HOUR_MS) for r in rows} == hours
