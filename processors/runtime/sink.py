"""Step 4 of the stream processor: write what the state step produced.

- online store: event-time-versioned upserts (a replay after a crash never regresses a value);
- `affresco.features.<group>`: one `FeatureUpdate` per entity update. At-least-once after a crash;
  (group, version, entity_key, source_offsets) identifies an update's content, so consumers dedupe
  on it exactly;
- the offline history `<offline>/<group>/v<version>/`: rows written once final (see
  `GroupEngine.finalize`), buffered and written at every epoch snapshot; (entity_key, event_time)
  identifies a row's content (repeats after a crash are equal, readers drop them);
- the raw archive: every source record, buffered like the history;
- dead letters to `affresco.dlq.<source-topic>`, keyed (source_topic, partition, offset, group).

A record the broker refuses (e.g. a timestamp too far ahead) is sent again on its own, since the
broker refuses a whole batch for one bad record; if it is refused again it is dead-lettered with
the broker's reason (`output_rejected`), and the processor goes on. Kafka records are flushed at
every snapshot, before bytewax commits the epoch's offsets, so no output of a committed epoch can
be lost.
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from processors.definitions import FeatureGroup
from processors.runtime.outputs import GroupCounts, OutputConfig, OutputWriter, SinkCounters

__all__ = ["GroupCounts", "OutputConfig", "ProcessorSink", "SinkCounters"]


class _Partition(OutputWriter, StatefulSinkPartition[Any, None]):
    """The bytewax sink partition: `OutputWriter` (write_batch, snapshot, close) as bytewax calls it."""


class ProcessorSink(FixedPartitionedSink[Any, None]):
    """One sink partition per process (it owns the embedded store)."""

    def __init__(self, groups: dict[str, FeatureGroup], config: OutputConfig, counters: SinkCounters) -> None:
        self.groups = groups
        self.config = config
        self.counters = counters

    def list_parts(self) -> list[str]:
        return ["0"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(self.groups, self.config, self.counters)
