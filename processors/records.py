"""What the engine's output becomes downstream: online records, `FeatureUpdate` events, history rows.

Shared by the stream processor's sink, backfill and the benchmarks, so every writer stores an
update the same way.
"""

from __future__ import annotations

from typing import Any, Literal

from processors.definitions import FeatureGroup
from processors.engine import EntityUpdate, HistoryRow
from state.online import OnlineRecord
from streams.events.platform import FeatureUpdate

__all__ = ["Writer", "feature_update_event", "history_row", "online_record"]

#: Which job wrote a history row (the `written_by` column of the offline datasets).
Writer = Literal["stream", "backfill"]


def online_record(group: FeatureGroup, update: EntityUpdate) -> OnlineRecord:
    """The online record of an update, stored under the group version's ref.

    Two versions of a group never overwrite each other; the store orders an entity's records by
    (event_time, revision), so a replay never regresses a value.
    """
    return OnlineRecord(group.ref, update.entity, update.event_time, update.values, update.state, update.revision)


def feature_update_event(group: FeatureGroup, update: EntityUpdate) -> FeatureUpdate:
    """The `FeatureUpdate` event of an update (its revision also travels in a header).

    `source_offsets` identifies the content: (group, version, entity_key, source_offsets) is the
    dedupe key of the feature-update topic, whose output is at-least-once after a crash.
    """
    return FeatureUpdate(
        event_time=update.event_time,
        group=group.name,
        version=group.version,
        entity_key=update.entity,
        values=update.values,
        source_topic=group.topic,
        source_partition=update.partition,
        source_offset=update.offset,
        source_offsets={str(p): o for p, o in sorted(update.frontier.items())},
    )


def history_row(row: HistoryRow, written_by: Writer) -> dict[str, Any]:
    """The offline (Parquet) row of a history row: key, event time, revision, values, writer."""
    return {
        "entity_key": row.entity,
        "event_time": row.event_time,
        "revision": row.revision,
        **row.values,
        "written_by": written_by,
    }
