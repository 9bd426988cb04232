"""The PyFlink job of `affresco process run --engine flink`: run in the flink venv, never imported by the main one.

    <flink venv>/bin/python -m processors.flink.job <config.json>

Kafka (the SQL connector's `KafkaSource`, per-partition watermarks from the record timestamps,
bounded at the latest offsets for `--until-idle`) → key by (topic, partition): `DecodeStep` with
the partition's event-time maxima in keyed state → key by (group, entity field): `EntityStep`
with the entity's `GroupState` in keyed state (RocksDB backend, checkpointed) → `OutputWriter`.

Why the Table API source: PyFlink's DataStream `KafkaSource` only takes a value deserializer, and
routing needs the headers (`event_type`), lateness the partition, and the DLQ and the update keys
the key and offset — the SQL connector gives all of them as metadata columns, over the same
`KafkaSource`. Why the outputs are written from Python and not by a `KafkaSink`: PyFlink's Kafka
record serializer cannot set headers (`event_type`, `schema_version`, `revision`), and Flink has
no Python Cassandra sink; `OutputWriter` is the bytewax processor's own writer.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Row, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import StreamTableEnvironment

from processors.flink.steps import DecodeStep, EntityStep, JobConfig, Outputs, RawRecord

SOURCE_TABLE = "affresco_sources"
#: Every key registers an event-time timer here: it fires when the bounded input ends (the watermark
#: reaches its maximum), before the operator finishes — the subtask's outputs are written then.
END_OF_INPUT = 2**63 - 1


def _confirm_at(ctx: KeyedProcessFunction.Context, flush_ms: int) -> None:
    """A processing-time timer for this key's pending outputs, 1 to 2 flush intervals ahead (one per key
    and instant: Flink keeps one timer per key and timestamp)."""
    now = ctx.timer_service().current_processing_time()
    ctx.timer_service().register_processing_time_timer((now // flush_ms + 2) * flush_ms)


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def source_ddl(config: JobConfig, lateness_ms: int) -> str:
    kafka = config.kafka_settings()
    options = {
        "connector": "kafka",
        "topic": ";".join(sorted(config.partitions)),
        "properties.bootstrap.servers": kafka.bootstrap_servers,
        "properties.group.id": f"affresco-flink-{config.job_name}",
        "scan.startup.mode": "earliest-offset",
        "key.format": "raw",
        "key.fields": "record_key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }
    if config.until_idle:
        options["scan.bounded.mode"] = "latest-offset"
    with_clause = ",\n  ".join(f"{_sql_string(k)} = {_sql_string(v)}" for k, v in options.items())
    return f"""
CREATE TEMPORARY TABLE {SOURCE_TABLE} (
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `headers` MAP<STRING, BYTES> METADATA VIRTUAL,
  `record_time` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `record_key` BYTES,
  `record_value` BYTES,
  WATERMARK FOR `record_time` AS `record_time` - INTERVAL '{_day_to_second(lateness_ms)}' DAY TO SECOND(3)
) WITH (
  {with_clause}
)"""


def _day_to_second(ms: int) -> str:
    """`ms` as a DAY TO SECOND interval literal: 'D HH:MM:SS.fff'."""
    ms = min(max(ms, 0), 99 * 86_400_000)  # DAY(2), the precision Flink supports
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{days} {hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def _millis(ts: Any) -> int:
    if ts is None:
        return 0
    if isinstance(ts, int | float):
        return int(ts)
    if hasattr(ts, "to_epoch_milli"):  # pyflink.common.time.Instant (TIMESTAMP_LTZ)
        return int(ts.to_epoch_milli())
    return int(ts.timestamp() * 1000)


class DecodeFunction(KeyedProcessFunction):
    """Per source partition, in offset order: `DecodeStep`; the event-time maxima in keyed state."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path

    def open(self, runtime_context: RuntimeContext) -> None:
        self.config = JobConfig.load(Path(self.config_path))
        groups = self.config.feature_groups()
        self.step = DecodeStep(groups, self.config.kafka_settings())
        self.outputs = Outputs(self.config, groups, "decode", with_store=False)
        self.subtask = runtime_context.get_index_of_this_subtask()
        # (the partition's event-time maxima by type, its pending dead letters)
        self.held = runtime_context.get_state(ValueStateDescriptor("partition", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Any:
        headers = value[3] or {}
        record = RawRecord(
            value[0], value[1], value[2], value[5], value[6],
            [(k, v if v is None else bytes(v)) for k, v in headers.items()], _millis(value[4]),
        )  # fmt: skip
        held = self.held.value()
        maxima, pending = held if held is not None else (None, {})
        if held is None:
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
        self.outputs.mark_active(self.subtask)
        routed = self.step.decode(record, None if self.step.has(record.topic_, record.partition_) else maxima)
        self.outputs.add(routed.dead)
        self.outputs.add(routed.counts)
        if routed.dead is not None:
            if not pending:
                _confirm_at(ctx, self.config.flush_ms)
            pending.update(self.outputs.pending(routed.dead))
        self.held.update((routed.maxima, pending))
        yield from routed.rows

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Any:
        if timestamp == END_OF_INPUT:
            _closing(self.outputs, self.subtask, at_end=True)
            return iter(())
        self.outputs.flush_due()
        held = self.held.value()
        if held is not None and held[1]:
            remaining = self.outputs.settle(held[1])
            if remaining:
                _confirm_at(ctx, self.config.flush_ms)
            if len(remaining) != len(held[1]):
                self.held.update((held[0], remaining))
        return iter(())

    def close(self) -> None:
        _closing(self.outputs, self.subtask)


class EntityFunction(KeyedProcessFunction):
    """Per (group, entity field value): `EntityStep` on the `GroupState` held in keyed state."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path

    def open(self, runtime_context: RuntimeContext) -> None:
        self.config = JobConfig.load(Path(self.config_path))
        groups = self.config.feature_groups()
        self.step = EntityStep(groups, self.config.partitions)
        self.outputs = Outputs(self.config, groups, "entity")
        self.subtask = runtime_context.get_index_of_this_subtask()
        # (the key's GroupState, its pending outputs)
        self.state = runtime_context.get_state(ValueStateDescriptor("group_state", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Any:
        _, ref, row = value
        held = self.state.value()
        group_state, pending = held if held is not None else (None, {})
        if held is None:
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
        self.outputs.mark_active(self.subtask)
        state, output = self.step.apply(ref, group_state, row)
        self.outputs.add(output)
        new = self.outputs.pending(output)
        if new:
            if not pending:
                _confirm_at(ctx, self.config.flush_ms)
            pending.update(new)
        self.state.update((state, pending))
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Any:
        if timestamp == END_OF_INPUT:
            _closing(self.outputs, self.subtask, at_end=True)
            return iter(())
        self.outputs.flush_due()
        held = self.state.value()
        if held is not None and held[1]:
            remaining = self.outputs.settle(held[1])
            if remaining:
                _confirm_at(ctx, self.config.flush_ms)
            if len(remaining) != len(held[1]):
                self.state.update((held[0], remaining))
        return iter(())

    def close(self) -> None:
        _closing(self.outputs, self.subtask)


def _closing(outputs: Outputs, subtask: int, *, at_end: bool = False) -> None:
    """Write the rest and the summary; a failure here is recorded beside the summaries (PyFlink may
    swallow exceptions of `close`), so the launcher fails the run with it."""
    try:
        if at_end:
            outputs.finish(subtask)
        else:
            outputs.close(subtask)
    except BaseException:
        run_dir = Path(outputs.config.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / f"error-{outputs.name}-{subtask}-{os.getpid()}.txt").write_text(traceback.format_exc())
        raise


def build(config: JobConfig, config_path: str) -> StreamExecutionEnvironment:
    groups = config.feature_groups()
    conf = Configuration()
    if config.target == "local":  # `flink run -j` ships it to a cluster
        conf.set_string("pipeline.jars", Path(config.jar).absolute().as_uri())
    conf.set_string("python.executable", config.python)
    conf.set_string("python.client.executable", config.python)
    conf.set_string("state.backend.type", "rocksdb")
    conf.set_string("execution.checkpointing.dir", (Path(config.run_dir) / "checkpoints").absolute().as_uri())
    conf.set_string("execution.checkpointing.interval", f"{config.checkpoint_interval_ms} ms")
    conf.set_string("table.local-time-zone", "UTC")
    if config.target == "local":
        # A failing job fails the run, with its cause in the log (the mini-cluster would retry forever).
        conf.set_string("restart-strategy.type", "none")
    else:
        # Restarts from the last checkpoint (a TaskManager lost), but not forever: a job that keeps
        # failing fails the run. Many attempts: few give up before a TaskManager's slots are back.
        conf.set_string("restart-strategy.type", "fixed-delay")
        conf.set_string("restart-strategy.fixed-delay.attempts", str(config.restart_attempts))
        conf.set_string("restart-strategy.fixed-delay.delay", "3 s")
        conf.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    # Keyed state is read and written per record: keep it cached in the Python worker.
    conf.set_string("python.state.cache-size", "100000")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(config.parallelism)
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(source_ddl(config, max(g.lateness_ms for g in groups)))
    records = t_env.to_data_stream(t_env.from_path(SOURCE_TABLE))
    rows = records.key_by(lambda r: f"{r[0]}|{r[1]}", key_type=Types.STRING()).process(
        DecodeFunction(config_path), output_type=Types.PICKLED_BYTE_ARRAY()
    )
    done = rows.key_by(lambda item: item[0], key_type=Types.STRING()).process(
        EntityFunction(config_path), output_type=Types.PICKLED_BYTE_ARRAY()
    )
    done.print()  # nothing: the outputs are written by the functions
    return env


def main(argv: list[str]) -> int:
    config_path = str(Path(argv[1]).absolute())
    config = JobConfig.load(Path(config_path))
    env = build(config, config_path)
    env.execute(config.job_name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
