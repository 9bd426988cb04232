"""Step 2 of the stream processor: per-shard entity state, folded by `GroupEngine`.

bytewax snapshots this state (with the Kafka offsets) at every epoch and restores it after a crash,
so a restarted processor continues exactly where the last snapshot left off.
"""

from __future__ import annotations

import pickle

from bytewax.operators import StatefulBatchLogic

from processors.engine import EntityState, GroupEngine, Watermark
from processors.runtime.items import GroupOutput, ShardBatch

__all__ = ["ShardLogic"]

ShardState = dict[str, EntityState]


class ShardLogic(StatefulBatchLogic[ShardBatch, GroupOutput, bytes]):
    """The entities of one group that hash to one shard."""

    def __init__(self, engines: dict[str, GroupEngine], partitions: dict[str, int], resume: bytes | None) -> None:
        self.engines = engines
        self.partitions = partitions  # source topic -> partition count
        self.states: ShardState = {}
        self.watermarks: dict[str, Watermark] = {}
        if resume is not None:
            self.states, self.watermarks = pickle.loads(resume)  # our own snapshot

    def on_batch(self, values: list[ShardBatch]) -> tuple[list[GroupOutput], bool]:
        outputs: list[GroupOutput] = []
        for batch in values:
            engine = self.engines[batch.group]
            topic = engine.group.topic
            wm = self.watermarks.get(topic)
            if wm is None:
                wm = self.watermarks[topic] = Watermark(self.partitions[topic])
            # This batch is judged against the progress before it; then the progress advances.
            result = engine.apply(self.states, batch.rows, wm.value(engine.group.lateness_ms))
            wm.advance(batch.partition_max)
            if result.updates or result.rejected:
                outputs.append(GroupOutput(batch.group, result.updates, result.rejected, engine.group.topic))
        return outputs, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # Serialized now, so later mutations cannot leak into a snapshot bytewax stores afterwards.
        return pickle.dumps((self.states, self.watermarks), protocol=pickle.HIGHEST_PROTOCOL)
