"""The bytewax dataflow of `affresco process run`, and how to run it with crash recovery."""

from __future__ import annotations

import gc
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from processors.definitions import FeatureGroup
from processors.engine import GroupEngine
from processors.runtime.items import ArchiveBatch, DeadLetterBatch, ShardBatch, TopicCounts
from processors.runtime.logic import ShardLogic
from processors.runtime.shards import ShardRouter
from processors.runtime.sink import OutputConfig, ProcessorSink, SinkCounters
from processors.runtime.source import PollingKafkaSource
from state.offline.temporaries import remove_stale_temporaries
from streams.admin import TopicAdmin
from streams.events.base import Event
from streams.exceptions import TopicError
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["ProcessorOptions", "build_flow", "prepare_recovery", "run_processor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessorOptions:
    until_idle: bool = False  # stop at the end of the source topics instead of following them
    batch_size: int = 5000
    shards: int = 4
    # Each epoch snapshots all shard state (cost grows with entities) and flushes the Parquet buffers;
    # input waits while it does (bench/recovery.py: 0.1-0.4 s per snapshot of the demo's state), so a
    # short epoch costs throughput and lag; a long one costs replay after a crash.
    epoch_s: float = 5.0
    recovery_dir: Path | None = None
    archive: bool = True
    metrics_port: int | None = None  # serve the counters as Prometheus metrics on 127.0.0.1:<port>


def build_flow(
    groups: Sequence[FeatureGroup], output: OutputConfig, options: ProcessorOptions, counters: SinkCounters
) -> Dataflow:
    """source topics (routed, validated) → per-shard batches → per-shard state → sink."""
    wanted: dict[str, list[type[Event]]] = {}
    for g in groups:
        if g.event_class not in wanted.setdefault(g.topic, []):
            wanted[g.topic].append(g.event_class)
    topics = sorted(wanted)
    flow = Dataflow("affresco_" + "_".join(sorted(g.name for g in groups)))
    source = PollingKafkaSource(
        output.kafka, wanted, tail=not options.until_idle, batch_size=options.batch_size, archive=options.archive
    )
    polls = op.input("kafka", flow, source)
    routed = op.flat_map_batch("shards", polls, ShardRouter(groups, options.shards))
    engines = {g.ref: GroupEngine(g) for g in groups}
    batches = op.filter("batches", routed, lambda x: isinstance(x, ShardBatch))
    others = op.filter("others", routed, lambda x: isinstance(x, ArchiveBatch | DeadLetterBatch | TopicCounts))
    keyed = op.key_on("shard", batches, lambda b: b.shard)
    partitions = _partition_counts(output.kafka, topics)
    outputs = op.stateful_batch("aggregate", keyed, lambda resume: ShardLogic(engines, partitions, resume))
    merged = op.merge("merge", op.key_rm("unkey", outputs), others)
    sink = ProcessorSink({g.ref: g for g in groups}, output, counters)
    op.output("sink", op.key_on("one", merged, lambda _: "0"), sink)
    return flow


def _partition_counts(settings: KafkaSettings, topics: list[str]) -> dict[str, int]:
    admin = TopicAdmin(settings)
    try:
        return {t: len(admin.partitions(t)) for t in topics}
    except TopicError as exc:
        msg = f"{exc}: produce to it first (e.g. `affresco simulate`) or create it (`affresco topics create`)"
        raise TopicError(msg) from exc


def _ensure_output_topics(groups: Sequence[FeatureGroup], settings: KafkaSettings) -> None:
    """Create the feature-update and dead-letter topics with their specs before the first write: a
    topic the broker auto-creates gets 1 partition and 7-day retention on historical timestamps."""
    topics = Topics(settings)
    specs = [topics.features_spec(g.name) for g in groups]
    specs += [topics.dlq_spec(t) for t in sorted({g.topic for g in groups})]
    TopicAdmin(settings).ensure(specs)


def prepare_recovery(directory: Path) -> RecoveryConfig:
    """bytewax's recovery store in `directory`, created atomically: a kill while it is being made
    leaves no half-created store that every later start would refuse."""
    if not (directory / "part-0.sqlite3").exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        building = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        init_db_dir(building, 1)
        if directory.exists():  # an empty or half-made store of an earlier version: never used
            shutil.rmtree(directory)
        os.replace(building, directory)
    for stale in directory.parent.glob(f".{directory.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)  # a kill during an earlier creation
    return RecoveryConfig(directory)


def run_processor(groups: Sequence[FeatureGroup], output: OutputConfig, options: ProcessorOptions) -> SinkCounters:
    """Run until the sources end (`until_idle`) or the process is stopped; resumable after a crash."""
    counters = SinkCounters()
    if options.metrics_port is not None:
        from processors.runtime.metrics import serve_metrics

        serve_metrics(counters, options.metrics_port)
    _ensure_output_topics(groups, output.kafka)
    if output.mirror_root is not None:
        removed = remove_stale_temporaries(output.mirror_root)
        if removed:
            log.info("removed %d unfinished Parquet file(s) of killed writers", removed)
    flow = build_flow(groups, output, options, counters)
    # Entity state is millions of small long-lived objects; CPython's default thresholds rescan all
    # of them every ~70k allocations. Young collections stay frequent, full ones become rare.
    gc.set_threshold(50_000, 20, 1000)
    recovery = prepare_recovery(options.recovery_dir) if options.recovery_dir is not None else None
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=options.epoch_s), recovery_config=recovery)
    return counters
