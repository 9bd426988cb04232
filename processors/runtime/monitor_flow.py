"""The bytewax dataflow of `affresco monitor run`: one model's predictions joined with its outcomes.

The same engine, source, recovery and dead-letter handling as the feature processor:

    predictions topic + outcome topic (one source, aligned across both topics, validated)
      → one stateful step holding the model's `Monitor` (join, windows, alerts), snapshotted
      → sink: `MonitoringMetric` / `Alert` events to affresco.monitoring, dead letters to the DLQ

The partitions of both topics read in step within half the spec's lateness of each other, so a
catch-up (or a restart) does not race one topic ahead and turn the other's events late. Each batch
is fed to the monitor in event time (predictions first on ties), as `monitor replay` feeds it.

Crash safety: bytewax snapshots the source offsets and the monitor's state together at every
epoch; the sink flushes its records before the epoch commits. After a kill -9 the monitor resumes
from the last snapshot, so no pair is counted twice in any state; the windows it closed after that
snapshot are published again with the same content. An output's identity (model, version,
partition, window, metric — `monitoring.published.identity`) names one value: readers keep the
last of each, and `read_published` does.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.run import cli_main

from monitoring.monitor import ManifestOf, Monitor, Output
from monitoring.spec import MonitorDefinition
from processors.runtime.flow import prepare_recovery
from processors.runtime.items import DeadLetterBatch, DecodedPoll, TopicCounts
from processors.runtime.source import Alignment, PollingKafkaSource
from streams.admin import TopicAdmin
from streams.dlq import DeadLetterWriter
from streams.events.base import Event
from streams.events.platform import Alert, MonitoringMetric
from streams.events.platform import Prediction as PredictionEvent
from streams.events.registry import event_class
from streams.producer import EventProducer, event_headers
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["MonitorCounters", "MonitorInputs", "MonitorOptions", "MonitorStep", "build_monitor_flow", "run_monitor"]

log = logging.getLogger(__name__)

#: Inputs of one batch, in the order the monitor takes them: (event time, 0 prediction / 1 outcome, fields).
Inputs = list[tuple[int, int, Mapping[str, Any]]]


@dataclass(frozen=True)
class MonitorInputs:
    """One poll's predictions and outcomes, as the stateful step takes them."""

    read_at: float  # time.monotonic() when the poll was split (for the output latency)
    inputs: Inputs


@dataclass(frozen=True)
class _Published:
    read_at: float
    outputs: list[Output]


@dataclass(frozen=True)
class MonitorOptions:
    until_idle: bool = False  # stop at the end of both topics (and close every window) instead of following
    batch_size: int = 5000
    epoch_s: float = 5.0
    recovery_dir: Path | None = None
    metrics_port: int | None = None  # serve the counters and the last metrics on 127.0.0.1:<port>/metrics


@dataclass
class MonitorCounters:
    """What the run did, live (Prometheus reads it at scrape time) and in the closing summary."""

    read: Counter[str] = field(default_factory=Counter)  # by topic
    skipped: dict[str, Counter[str]] = field(default_factory=dict)  # topic -> event type -> n
    dead_letters: dict[str, Counter[str]] = field(default_factory=dict)  # topic -> reason -> n
    published: Counter[str] = field(default_factory=Counter)  # monitoring_metric / alert
    last: dict[tuple[str, str, str, str, int], float] = field(default_factory=dict)  # (model, version,
    # partition, metric, window ms) -> the latest closed window's value
    last_count: dict[tuple[str, str, str, int], int] = field(default_factory=dict)  # (model, version, partition, ms)
    firing: dict[tuple[str, str, str, str], bool] = field(default_factory=dict)  # (model, rule, version, partition)
    output_latency_ms: list[float] = field(default_factory=list)  # batch read → its outputs queued (recent)
    monitor: Monitor | None = None  # the state step's monitor (one worker: the same process)

    def summary(self) -> dict[str, Any]:
        join = self.monitor.counts() if self.monitor is not None else {}
        return {
            **join,
            "read": dict(self.read),
            "skipped": {t: dict(c) for t, c in self.skipped.items()},
            "dead_lettered": {t: dict(c) for t, c in self.dead_letters.items()},
            "published": dict(self.published),
            "alerts_firing": sorted("|".join(k) for k, on in self.firing.items() if on),
        }


def _dead_letter_group(model: str) -> str:
    # The outcome topic may also feed feature groups, whose processor dead-letters the same record
    # under its own group: the monitor's rejections carry the monitor's name.
    return f"monitor:{model}"


class _Split:
    """Decoded polls → the inputs of the monitor (keyed, one state), dead letters and counts."""

    def __init__(self, definition: MonitorDefinition, predictions_topic: str) -> None:
        self.model = definition.model
        self.predictions_topic = predictions_topic
        self.outcome_type = definition.spec.outcomes.event_type

    def __call__(self, polls: list[DecodedPoll]) -> list[Any]:
        inputs: Inputs = []
        dead = []
        out: list[Any] = []
        group = _dead_letter_group(self.model)
        for poll in polls:
            kind = 0 if poll.topic == self.predictions_topic else 1
            for rows in poll.rows.values():
                inputs += [(r.fields["event_time"], kind, r.fields) for r in rows]
            dead += [dataclasses.replace(d, group=group) for d in poll.dead]
            out.append(TopicCounts(poll.topic, poll.read, poll.skipped, Counter(d.reason for d in poll.dead)))
        if inputs:
            out.append(MonitorInputs(time.monotonic(), inputs))
        if dead:
            out.append(DeadLetterBatch(dead))
        return out


class MonitorStep(StatefulBatchLogic[MonitorInputs, _Published, bytes]):
    """The flow's one stateful step: the model's `Monitor`, fed each batch in event time, snapshotted."""

    def __init__(self, monitor: Monitor, resume: bytes | None, close_at_end: bool) -> None:
        self.monitor = monitor
        self.close_at_end = close_at_end
        if resume is not None:
            monitor.restore(resume)

    def on_batch(self, values: list[MonitorInputs]) -> tuple[list[_Published], bool]:
        read_at = min(v.read_at for v in values)
        inputs = [item for batch in values for item in batch.inputs]
        inputs.sort(key=lambda e: (e[0], e[1]))
        outputs: list[Output] = []
        monitor = self.monitor
        for _, kind, fields in inputs:
            if kind == 0:
                outputs += monitor.prediction(fields)
            else:
                outputs += monitor.outcome(fields)
        return ([_Published(read_at, outputs)] if outputs else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[_Published], bool]:
        if not self.close_at_end:
            return [], StatefulBatchLogic.RETAIN
        return [_Published(time.monotonic(), self.monitor.close())], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return self.monitor.snapshot()


class _SinkPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, settings: KafkaSettings, counters: MonitorCounters) -> None:
        self.counters = counters
        self.producer = EventProducer(settings)
        self.dlq = DeadLetterWriter(self.producer)
        self.topic = Topics(settings).monitoring
        self._headers = {cls: event_headers(cls) for cls in (MonitoringMetric, Alert)}

    def write_batch(self, values: list[Any]) -> None:
        c = self.counters
        for item in values:
            if isinstance(item, TopicCounts):
                c.read[item.topic] += item.read
                c.skipped.setdefault(item.topic, Counter()).update(item.skipped)
                c.dead_letters.setdefault(item.topic, Counter()).update(item.dead)
            elif isinstance(item, DeadLetterBatch):
                for d in item.items:
                    self.dlq.send(
                        source_topic=d.topic, value=d.value, reason=d.reason, error=d.error, key=d.key,
                        partition=d.partition, offset=d.offset, expected_type=d.expected_type, group=d.group,
                        step=d.step,
                    )  # fmt: skip
            elif isinstance(item, _Published):
                for event in item.outputs:
                    self._publish(event)
                c.output_latency_ms = [*c.output_latency_ms[-999:], (time.monotonic() - item.read_at) * 1000]
        self.producer.poll(0)

    def _publish(self, event: Output) -> None:
        c = self.counters
        self.producer.send_raw(self.topic, event.model_dump_json().encode(), key=event.key(),
                               headers=self._headers[type(event)], timestamp_ms=event.event_time)  # fmt: skip
        c.published[event.event_type] += 1
        version, partition = str(event.model_version or ""), event.partition or ""
        if isinstance(event, MonitoringMetric):
            window = event.window_end - event.window_start
            c.last[(event.model, version, partition, event.metric, window)] = event.value
            c.last_count[(event.model, version, partition, window)] = event.count
        else:
            c.firing[(event.model, event.rule, version, partition)] = event.state == "firing"

    def snapshot(self) -> None:
        # Before bytewax commits the epoch's offsets: no output of a committed epoch can be lost.
        self.producer.flush(60)

    def close(self) -> None:
        self.snapshot()


class _MonitorSink(FixedPartitionedSink[Any, None]):
    def __init__(self, settings: KafkaSettings, counters: MonitorCounters) -> None:
        self.settings = settings
        self.counters = counters

    def list_parts(self) -> list[str]:
        return ["0"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _SinkPartition:
        return _SinkPartition(self.settings, self.counters)


def build_monitor_flow(
    definition: MonitorDefinition,
    manifest_of: ManifestOf,
    settings: KafkaSettings,
    options: MonitorOptions,
    counters: MonitorCounters,
) -> Dataflow:
    predictions = Topics(settings).predictions(definition.model)
    outcomes = definition.spec.outcomes
    wanted: dict[str, list[type[Event]]] = {predictions: [PredictionEvent],
                                            outcomes.topic: [event_class(outcomes.event_type)]}  # fmt: skip
    if outcomes.topic == predictions:
        msg = f"the outcome topic cannot be the predictions topic {predictions}"
        raise ValueError(msg)
    alignment = Alignment(max(1, definition.lateness_ms // 2), across_topics=True)
    source = PollingKafkaSource(settings, wanted, tail=not options.until_idle, batch_size=options.batch_size,
                                archive=False, alignment=alignment)  # fmt: skip
    flow = Dataflow(f"affresco_monitor_{definition.model}")
    polls = op.input("kafka", flow, source)
    split = op.flat_map_batch("split", polls, _Split(definition, predictions))
    batches = op.filter("inputs", split, lambda x: isinstance(x, MonitorInputs))
    others = op.filter("others", split, lambda x: not isinstance(x, MonitorInputs))
    keyed = op.key_on("model", batches, lambda _: definition.model)

    def logic(resume: bytes | None) -> MonitorStep:
        monitor = Monitor(definition, manifest_of)
        counters.monitor = monitor
        return MonitorStep(monitor, resume, close_at_end=options.until_idle)

    outputs = op.stateful_batch("monitor", keyed, logic)
    merged = op.merge("merge", op.key_rm("unkey", outputs), others)
    op.output("sink", op.key_on("one", merged, lambda _: "0"), _MonitorSink(settings, counters))
    return flow


def _ensure_topics(definition: MonitorDefinition, settings: KafkaSettings) -> None:
    topics = Topics(settings)
    admin = TopicAdmin(settings)
    predictions = topics.predictions(definition.model)
    missing = [t for t in (predictions, definition.spec.outcomes.topic) if t not in admin.names()]
    if missing:
        from streams.exceptions import TopicError

        msg = (f"no topic {' or '.join(missing)}: serve or predict with {definition.model} first "
               "(predictions), or produce the outcomes")  # fmt: skip
        raise TopicError(msg)
    dlqs = [topics.dlq_spec(predictions), topics.dlq_spec(definition.spec.outcomes.topic)]
    admin.ensure([topics.monitoring_spec(), *dlqs])


def run_monitor(
    definition: MonitorDefinition,
    manifest_of: ManifestOf,
    settings: KafkaSettings,
    options: MonitorOptions,
    counters: MonitorCounters | None = None,
) -> MonitorCounters:
    """Run until both topics end (`until_idle`) or the process is stopped; resumable after a crash."""
    counters = counters or MonitorCounters()
    _ensure_topics(definition, settings)
    if options.metrics_port is not None:
        from processors.runtime.metrics import serve_monitor_metrics

        serve_monitor_metrics(counters, options.metrics_port)
    flow = build_monitor_flow(definition, manifest_of, settings, options, counters)
    gc.set_threshold(50_000, 20, 1000)  # as the feature processor: long-lived state, rare full collections
    recovery = prepare_recovery(options.recovery_dir) if options.recovery_dir is not None else None
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=options.epoch_s), recovery_config=recovery)
    return counters
