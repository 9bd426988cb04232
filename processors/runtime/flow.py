"""The bytewax dataflow of `affresco process run`, and how to run it with crash recovery."""

from __future__ import annotations

import gc
import logging
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
from processors.runtime.decode import BatchDecoder
from processors.runtime.items import ArchiveBatch, DeadLetterBatch, ShardBatch
from processors.runtime.logic import ShardLogic
from processors.runtime.sink import OutputConfig, ProcessorSink, SinkCounters
from processors.runtime.source import PollingKafkaSource
from streams.admin import TopicAdmin
from streams.exceptions import TopicError
from streams.settings import KafkaSettings

__all__ = ["ProcessorOptions", "build_flow", "run_processor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessorOptions:
    until_idle: bool = False  # stop at the end of the source topics instead of following them
    batch_size: int = 5000
    shards: int = 4
    # Each epoch snapshots all shard state (cost grows with entities) and flushes the Parquet buffers;
    # outputs do not wait for it, so a longer epoch costs no freshness, only replay after a crash.
    epoch_s: float = 5.0
    recovery_dir: Path | None = None
    archive: bool = True


def build_flow(
    groups: Sequence[FeatureGroup], output: OutputConfig, options: ProcessorOptions, counters: SinkCounters
) -> Dataflow:
    """source topics → decode (per batch) → per-shard state → sink."""
    topics = sorted({g.topic for g in groups})
    flow = Dataflow("affresco_" + "_".join(sorted(g.name for g in groups)))
    source = PollingKafkaSource(output.kafka, topics, tail=not options.until_idle, batch_size=options.batch_size)
    msgs = op.input("kafka", flow, source)
    decoded = op.flat_map_batch("decode", msgs, BatchDecoder(groups, options.shards, archive=options.archive))
    engines = {g.ref: GroupEngine(g) for g in groups}
    batches = op.filter("batches", decoded, lambda x: isinstance(x, ShardBatch))
    others = op.filter("others", decoded, lambda x: isinstance(x, ArchiveBatch | DeadLetterBatch))
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


def run_processor(groups: Sequence[FeatureGroup], output: OutputConfig, options: ProcessorOptions) -> SinkCounters:
    """Run until the sources end (`until_idle`) or the process is stopped; resumable after a crash."""
    counters = SinkCounters()
    flow = build_flow(groups, output, options, counters)
    # Entity state is millions of small long-lived objects; CPython's default thresholds rescan all
    # of them every ~70k allocations. Young collections stay frequent, full ones become rare.
    gc.set_threshold(50_000, 20, 1000)
    recovery = None
    if options.recovery_dir is not None:
        options.recovery_dir.mkdir(parents=True, exist_ok=True)
        if not any(options.recovery_dir.iterdir()):
            init_db_dir(options.recovery_dir, 1)
        recovery = RecoveryConfig(options.recovery_dir)
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=options.epoch_s), recovery_config=recovery)
    return counters
