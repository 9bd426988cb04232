"""The stream processors' accounting as Prometheus metrics: the closing summary, live.

A collector reads `SinkCounters` when scraped, so the hot path pays nothing for metrics. Served by
`affresco process run --metrics-port N` at `http://127.0.0.1:N/metrics`.

    affresco_processor_records_read_total{topic}                  records read from a source topic
    affresco_processor_records_skipped_total{topic,event_type}    known types no group reads
    affresco_processor_dead_letters_total{topic,group,reason}     group="" when routing/decoding refused it
    affresco_processor_events_total{group,outcome}                accepted / filtered / late
    affresco_processor_updates_total{group}                       online records and FeatureUpdates
    affresco_processor_history_rows_total{group,kind}             final / forced / at_end
    affresco_processor_output_rejected_total                      records the broker refused twice
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from processors.runtime.monitor_flow import MonitorCounters
from processors.runtime.sink import SinkCounters

__all__ = ["MonitorCollector", "ProcessorCollector", "serve_metrics", "serve_monitor_metrics"]


class ProcessorCollector(Collector):
    """Metrics from the processor's counters, computed at scrape time."""

    def __init__(self, counters: SinkCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        read = CounterMetricFamily(
            "affresco_processor_records_read", "Records read from a source topic", labels=["topic"]
        )
        for topic, n in sorted(c.read.items()):
            read.add_metric([topic], n)
        skipped = CounterMetricFamily(
            "affresco_processor_records_skipped",
            "Records of a known type no group reads",
            labels=["topic", "event_type"],
        )
        for topic, kinds in sorted(c.skipped.items()):
            for kind, n in sorted(kinds.items()):
                skipped.add_metric([topic, kind], n)
        dead = CounterMetricFamily(
            "affresco_processor_dead_letters",
            "Records sent to the dead-letter topic",
            labels=["topic", "group", "reason"],
        )
        for topic, reasons in sorted(c.topic_dead_letters.items()):
            for reason, n in sorted(reasons.items()):
                dead.add_metric([topic, "", reason], n)
        events = CounterMetricFamily(
            "affresco_processor_events", "Valid events of a group's type, by outcome", labels=["group", "outcome"]
        )
        updates = CounterMetricFamily("affresco_processor_updates", "Entity updates written", labels=["group"])
        history = CounterMetricFamily(
            "affresco_processor_history_rows", "Rows of the offline history written", labels=["group", "kind"]
        )
        for ref, g in sorted(c.groups.items()):
            for outcome, n in (("accepted", g.accepted), ("filtered", g.filtered), ("late", g.late)):
                events.add_metric([ref, outcome], n)
            updates.add_metric([ref], g.updates)
            final = g.history_rows - g.history_forced - g.history_at_end
            for kind, n in (("final", final), ("forced", g.history_forced), ("at_end", g.history_at_end)):
                history.add_metric([ref, kind], n)
            for reason, n in sorted(g.dead_lettered.items()):
                dead.add_metric([c.group_topics.get(ref, ""), ref, reason], n)
        rejected = CounterMetricFamily(
            "affresco_processor_output_rejected", "Output records the broker refused, also when sent alone"
        )
        rejected.add_metric([], c.output_rejected)
        yield from (read, skipped, dead, events, updates, history, rejected)


def serve_metrics(counters: SinkCounters, port: int, host: str = "127.0.0.1") -> None:
    """Expose the counters at `http://host:port/metrics` (a daemon thread, for the process's life)."""
    registry = CollectorRegistry()  # this run's only: no clash with other collectors in the process
    registry.register(ProcessorCollector(counters))
    start_http_server(port, addr=host, registry=registry)


class MonitorCollector(Collector):
    """`affresco monitor run`'s counters and latest window values, computed at scrape time.

        affresco_monitor_records_read_total{topic}                     records read (both inputs)
        affresco_monitor_dead_letters_total{topic,reason}              inputs that failed validation
        affresco_monitor_predictions_total{model,outcome}              paired / unmatched / duplicate / late
        affresco_monitor_outcomes_total{model,outcome}                 matched / unmatched / duplicate / late
        affresco_monitor_waiting{model,kind}                           predictions / outcomes waiting to pair
        affresco_monitor_published_total{event_type}                   monitoring_metric / alert events
        affresco_monitor_metric{model,version,partition,metric,window} the latest closed window's value
        affresco_monitor_window_pairs{model,version,partition,window}  pairs (or predictions) in it
        affresco_monitor_alert_firing{model,rule,version,partition}    1 while firing, 0 once resolved

    `version` and `partition` are "" where the scope does not distinguish them (the whole model).
    """

    def __init__(self, counters: MonitorCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        read = CounterMetricFamily("affresco_monitor_records_read", "Records read", labels=["topic"])
        for topic, n in sorted(c.read.items()):
            read.add_metric([topic], n)
        dead = CounterMetricFamily(
            "affresco_monitor_dead_letters", "Inputs sent to the dead-letter topic", labels=["topic", "reason"]
        )
        for topic, reasons in sorted(c.dead_letters.items()):
            for reason, n in sorted(reasons.items()):
                dead.add_metric([topic, reason], n)
        predictions = CounterMetricFamily(
            "affresco_monitor_predictions", "Predictions, by what the join made of them", labels=["model", "outcome"]
        )
        outcomes = CounterMetricFamily(
            "affresco_monitor_outcomes", "Outcomes, by what the join made of them", labels=["model", "outcome"]
        )
        waiting = GaugeMetricFamily("affresco_monitor_waiting", "Inputs waiting to pair", labels=["model", "kind"])
        monitor = c.monitor
        if monitor is not None:
            model, join = monitor.definition.model, monitor.join
            for outcome, n in sorted(dict(join.predictions).items()):
                predictions.add_metric([model, outcome], n)
            for outcome, n in sorted(dict(join.outcomes).items()):
                outcomes.add_metric([model, outcome], n)
            waiting.add_metric([model, "predictions"], sum(len(p) for p in list(join.waiting.values())))
            waiting.add_metric([model, "outcomes"], len(join.slots))
        published = CounterMetricFamily(
            "affresco_monitor_published", "Events published to the monitoring topic", labels=["event_type"]
        )
        for kind, n in sorted(c.published.items()):
            published.add_metric([kind], n)
        last = GaugeMetricFamily(
            "affresco_monitor_metric", "The latest closed window's value",
            labels=["model", "version", "partition", "metric", "window"],
        )  # fmt: skip
        for (model, version, partition, metric, window_ms), value in sorted(c.last.items()):
            last.add_metric([model, version, partition, metric, _window(window_ms)], value)
        pairs = GaugeMetricFamily(
            "affresco_monitor_window_pairs", "Pairs in the latest closed window",
            labels=["model", "version", "partition", "window"],
        )  # fmt: skip
        for (model, version, partition, window_ms), n in sorted(c.last_count.items()):
            pairs.add_metric([model, version, partition, _window(window_ms)], n)
        firing = GaugeMetricFamily(
            "affresco_monitor_alert_firing", "1 while the alert fires", labels=["model", "rule", "version", "partition"]
        )
        for key, on in sorted(c.firing.items()):
            firing.add_metric(list(key), 1.0 if on else 0.0)
        yield from (read, dead, predictions, outcomes, waiting, published, last, pairs, firing)


def _window(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def serve_monitor_metrics(counters: MonitorCounters, port: int, host: str = "127.0.0.1") -> None:
    registry = CollectorRegistry()
    registry.register(MonitorCollector(counters))
    start_http_server(port, addr=host, registry=registry)
