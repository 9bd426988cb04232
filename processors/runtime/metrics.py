"""The stream processor's accounting as Prometheus metrics: the closing summary, live.

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
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from processors.runtime.sink import SinkCounters

__all__ = ["ProcessorCollector", "serve_metrics"]


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
