"""What an `EntityUpdate` becomes downstream: an online record and a `FeatureUpdate` event.

Shared by the stream processor's sink, backfill's `--load-online` and the benchmarks, so every
writer stores an update the same way.
"""

from __future__ import annotations

from typing import Any

from processors.definitions import FeatureGroup
from processors.engine import EntityUpdate
from state.online import OnlineRecord
from state.online.base import MAX_REVISION
from streams.events.platform import FeatureUpdate

__all__ = ["feature_update_event", "mirror_row", "online_record"]


def online_record(group: FeatureGroup, update: EntityUpdate) -> OnlineRecord:
    """The online record of an update, stored under the group version's ref.

    Two versions of a group never overwrite each other. The store orders versions by
    (event_time, revision ≤ 999); past 999 events of one entity the revision saturates and equal
    versions are simply rewritten (the newest write wins).
    """
    revision = min(update.revision, MAX_REVISION)
    return OnlineRecord(group.ref, update.entity, update.event_time, update.values, update.state, revision)


def feature_update_event(group: FeatureGroup, update: EntityUpdate) -> FeatureUpdate:
    """The `FeatureUpdate` event of an update (its revision travels in a header)."""
    return FeatureUpdate(
        event_time=update.event_time,
        group=group.name,
        version=group.version,
        entity_key=update.entity,
        values=update.values,
        source_topic=group.topic,
        source_partition=update.partition,
        source_offset=update.offset,
    )


def mirror_row(update: EntityUpdate) -> dict[str, Any]:
    """The offline (Parquet) row of an update: key, event time, revision, values, Kafka position."""
    return {
        "entity_key": update.entity,
        "event_time": update.event_time,
        "revision": update.revision,
        **update.values,
        "kafka_partition": update.partition,
        "kafka_offset": update.offset,
    }
