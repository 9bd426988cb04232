"""Benchmark: validated events produced per second, and produce→consume latency at a fixed rate.

Prints one JSON line. Targets (issue 2): ≥ 200k validated events/s from one process;
p99 < 20 ms at 1,000 events/s on the local broker. Needs a running broker (`affresco infra up`).

    python bench/produce.py [--events 500000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import uuid
from typing import Any, Literal

import numpy as np

from bench._machine import machine
from streams.admin import TopicAdmin, TopicSpec
from streams.codec import EventDecoder
from streams.consumer import EventConsumer
from streams.dlq import DeadLetterWriter
from streams.events import DriverPing
from streams.ingest import ingest_lines
from streams.producer import EventProducer
from streams.settings import KafkaSettings

T0 = 1_767_225_600_000


def make_lines(n: int) -> list[bytes]:
    statuses: tuple[Literal["available", "on_trip", "offline"], ...] = ("available", "on_trip", "offline")
    return [
        DriverPing(
            event_time=T0 + i,
            driver_id=f"d-{i % 5000:05d}",
            country="US",
            city="nyc",
            zone=f"nyc-{i % 20:02d}",
            status=statuses[i % 3],
        )
        .model_dump_json()
        .encode()
        for i in range(n)
    ]


def throughput(settings: KafkaSettings, n: int) -> dict[str, float]:
    topic = f"bench.produce.{uuid.uuid4().hex[:8]}"
    TopicAdmin(settings).ensure([TopicSpec(topic, partitions=4, retention_ms=3_600_000)])
    lines = make_lines(n)
    producer = EventProducer(settings)
    dlq = DeadLetterWriter(producer)
    started = time.perf_counter()
    report = ingest_lines(lines, topic, producer, dlq, decoder=EventDecoder(DriverPing))
    producer.flush(120)
    elapsed = time.perf_counter() - started
    if report.produced != n:
        raise RuntimeError(report)
    # Where the time goes: validation alone, on the same lines.
    started = time.perf_counter()
    decoder = EventDecoder(DriverPing)
    for i in range(0, n, 5000):  # the batch size `ingest_lines` uses
        decoder.decode(lines[i : i + 5000])
    validate_s = time.perf_counter() - started
    TopicAdmin(settings).delete([topic])
    return {
        "events": n,
        "seconds": round(elapsed, 3),
        "validated_events_per_s": round(n / elapsed),
        "validate_only_us_per_event": round(validate_s / n * 1e6, 2),
        "produce_us_per_event": round((elapsed - validate_s) / n * 1e6, 2),
    }


def _consume(settings: KafkaSettings, topic: str, n: int, ready: Any, out: Any) -> None:
    lat: list[float] = []
    with EventConsumer(
        [topic], f"bench-{uuid.uuid4().hex[:6]}", settings, from_beginning=True, config={"fetch.wait.max.ms": 5}
    ) as consumer:
        # Start timing only once the warm-up record arrived: group join and the idempotent producer's
        # id are one-off costs, not steady-state latency.
        while not any(m.key() == b"warmup" for m in consumer.poll(1, 0.1)):
            pass
        ready.set()
        while len(lat) < n:
            # consume(N, t) waits for N records or t seconds: ask for one so nothing waits on a batch.
            for m in consumer.poll(1, 0.1):
                sent_ns = int.from_bytes(m.key() or b"\0", "big")
                lat.append((time.time_ns() - sent_ns) / 1e6)
    out.put(lat)


def latency(settings: KafkaSettings, rate: int, seconds: float) -> dict[str, float]:
    topic = f"bench.latency.{uuid.uuid4().hex[:8]}"
    TopicAdmin(settings).ensure([TopicSpec(topic, partitions=4, retention_ms=3_600_000)])
    n = int(rate * seconds)
    ready = mp.Event()
    out: mp.Queue[list[float]] = mp.Queue()
    proc = mp.Process(target=_consume, args=(settings, topic, n, ready, out))
    proc.start()
    producer = EventProducer(settings, linger_ms=0)
    line = make_lines(1)[0]
    producer.send_raw(topic, line, key=b"warmup")
    producer.flush(30)
    if not ready.wait(60):
        msg = "the consumer never saw the warm-up record"
        raise RuntimeError(msg)
    decoder = EventDecoder(DriverPing)
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        while (now := time.perf_counter()) < target:
            time.sleep(min(0.0005, target - now))
        event = decoder.decode_one(line)  # the same validation a real producer does
        if not isinstance(event, DriverPing):
            raise TypeError(event)
        # The key carries the send time so the consumer process can measure end-to-end latency.
        producer.send_raw(topic, line, key=time.time_ns().to_bytes(8, "big"), timestamp_ms=event.event_time)
        producer.poll(0)
    producer.flush(30)
    lat = np.array(out.get(timeout=60))
    proc.join(10)
    TopicAdmin(settings).delete([topic])
    return {
        "rate_per_s": rate,
        "messages": int(lat.size),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    settings = KafkaSettings()
    result = {
        "bench": "produce",
        "throughput": throughput(settings, args.events),
        "latency": latency(settings, args.rate, args.seconds),
        "targets": {"validated_events_per_s": 200_000, "p99_ms_at_1000_per_s": 20},
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
