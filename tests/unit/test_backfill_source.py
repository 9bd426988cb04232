"""Backfill's sources: routing, validation and prior maxima as the stream's; the archive in whole hours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import backfill.source as source
from backfill.source import Chunk, read_chunks
from processors.progress import PriorMax
from streams.settings import KafkaSettings
from tests.unit.test_engine import make_group

T0 = 1_767_225_600_000


@dataclass
class FakeMessage:
    """The part of confluent_kafka.Message a backfill reads."""

    p: int
    off: int
    ts: int
    payload: bytes
    hdrs: list[tuple[str, bytes | None]] | None

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.off

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)

    def headers(self) -> list[tuple[str, bytes | None]] | None:
        return self.hdrs

    def value(self) -> bytes:
        return self.payload

    def key(self) -> bytes:
        return b"k"


def trip(t: int, **over: Any) -> bytes:
    fields = {
        "event_time": t, "event_type": "trip_requested", "trip_id": "t", "rider_id": "r", "country": "US",
        "city": "nyc", "pickup_zone": "z1", "dropoff_zone": "z2", "distance_km": 2.0, "surge": 1.0,
    }  # fmt: skip
    return orjson.dumps({**fields, **over})


def messages() -> list[FakeMessage]:
    """Two partitions; every 5th record another type (by header), every 7th invalid, some without headers."""
    out = []
    for i in range(60):
        p, off, t = i % 2, i // 2, T0 + i * 1000 - (5000 if i == 11 else 0)  # one out-of-order timestamp
        hdrs: list[tuple[str, bytes | None]] | None = [("event_type", b"trip_requested"), ("schema_version", b"1")]
        if i % 5 == 0:
            hdrs = [("schema_version", b"1"), ("event_type", b"trip_completed")]
        elif i % 6 == 0:
            hdrs = None  # no header: routed by the body's event_type
        payload = trip(t, distance_km=-1.0) if i % 7 == 0 else trip(t)
        out.append(FakeMessage(p, off, t, payload, hdrs))
    return out


def test_records_are_routed_validated_and_stamped_in_offset_order() -> None:
    msgs = messages()
    group = make_group()
    chunk, prior = Chunk(), PriorMax()
    router = source._router(group, KafkaSettings())
    for lo in range(0, len(msgs), 7):  # however the records arrive in consume batches
        source._fill(chunk, msgs[lo : lo + 7], router, prior, group.event_type)
    assert chunk.read == 60
    wanted = [m for m in msgs if m.hdrs is None or ("event_type", b"trip_completed") not in m.hdrs]
    valid = [m for m in wanted if m.payload == trip(m.ts)]
    # Headerless records are routed by their body: trip_requested here, so they are the group's.
    assert [(r.partition, r.offset) for r in chunk.rows] == [(m.p, m.off) for m in valid]
    assert all(r.raw == m.payload and r.key == b"k" for r, m in zip(chunk.rows, valid, strict=True))
    assert chunk.rows[0].fields == orjson.loads(valid[0].payload)
    assert chunk.invalid == {"validation_error": len(wanted) - len(valid)}
    assert chunk.skipped == len(msgs) - len(wanted)
    # prior_max: the greatest event time of the earlier valid events of the partition.
    for row in chunk.rows:
        earlier = [m.ts for m in valid if m.p == row.partition and m.off < row.offset]
        assert row.prior_max == max(earlier, default=-1)
    assert prior.of(group.event_type) == {p: max(m.ts for m in valid if m.p == p) for p in (0, 1)}


HOUR = 3_600_000


def test_the_archive_is_read_in_whole_hours_skipping_empty_ones_and_resumes(tmp_path: Path) -> None:
    from state.offline import RawArchive

    group = make_group()
    # Hours 0, 1, 5 and 30 of the range hold events (12, 3, 8, 1 of them); everything else is empty.
    counts = {0: 12, 1: 3, 5: 8, 30: 1}
    rows, offset = [], 0
    for hour, n in counts.items():
        for i in range(n):
            t = T0 + hour * HOUR + i * 1000
            rows.append({"topic": group.topic, "kafka_partition": 0, "kafka_offset": offset, "key": b"k",
                         "value": trip(t), "event_time": t, "event_type": "trip_requested"})  # fmt: skip
            offset += 1
    RawArchive(tmp_path, durable=False).write(rows + rows[:4])  # at-least-once: some written twice

    def archived(chunk_size: int, resume: int | None = None) -> list[Chunk]:
        found = read_chunks(group, "archive", T0, T0 + 365 * 24 * HOUR, settings=KafkaSettings(),
                            offline_root=tmp_path, chunk_size=chunk_size, resume=resume)  # fmt: skip
        return list(found)

    got = archived(chunk_size=11)
    # Whole hours, up to 11 records a chunk (hour 0's 12 + 4 repeats overflow it alone): [0], [1, 5], [30].
    assert [c.read for c in got] == [12, 11, 1]
    assert [c.complete_before for c in got] == [T0 + HOUR, T0 + 6 * HOUR, T0 + 31 * HOUR]
    assert [r.offset for c in got for r in c.rows] == list(range(offset))  # each record once, in order
    rest = archived(chunk_size=11, resume=got[0].resume)
    assert [r.offset for c in rest for r in c.rows] == list(range(12, offset))
