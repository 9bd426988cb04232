"""Step 3 of the stream processor: per-shard group state, folded and finalized by `GroupEngine`.

bytewax snapshots this state (with the source offsets and the sources' event-time maxima) at every
epoch and restores it after a crash, so a restarted processor continues exactly where the last
snapshot left off.
"""

from __future__ import annotations

import pickle

from bytewax.operators import StatefulBatchLogic

from processors.engine import HISTORY_GRACE_MS, GroupEngine, GroupState
from processors.resources import gc_paused
from processors.runtime.items import GroupOutput, ShardBatch

__all__ = ["ShardLogic"]


class ShardLogic(StatefulBatchLogic[ShardBatch, GroupOutput, bytes]):
    """The entities of one group that hash to one shard."""

    def __init__(self, engines: dict[str, GroupEngine], partitions: dict[str, int], resume: bytes | None) -> None:
        self.engines = engines
        self.partitions = partitions  # source topic -> partition count
        self.states: dict[str, GroupState] = {}  # group ref -> state (one group per shard key)
        if resume is not None:
            with gc_paused():  # millions of small objects at once: no collection passes over them meanwhile
                self.states = pickle.loads(resume)  # our own snapshot

    def _state(self, ref: str) -> GroupState:
        state = self.states.get(ref)
        if state is None:
            state = self.states[ref] = GroupState(self.partitions[self.engines[ref].group.topic])
        return state

    def on_batch(self, values: list[ShardBatch]) -> tuple[list[GroupOutput], bool]:
        outputs: list[GroupOutput] = []
        for batch in values:
            engine = self.engines[batch.group]
            group = engine.group
            state = self._state(batch.group)
            result = engine.apply(state, batch.rows)
            state.advance(batch.progress)
            # History rows once the watermark passed their hour; a silent partition cannot hold them
            # (and their memory) back for longer than the grace period.
            history = engine.finalize(
                state, state.horizon(group.lateness_ms), force_before=state.furthest - HISTORY_GRACE_MS
            )
            if result.updates or result.rejected or history or result.filtered:
                outputs.append(
                    GroupOutput(
                        batch.group,
                        group.topic,
                        updates=result.updates,
                        rejected=result.rejected,
                        history=history,
                        accepted=result.accepted,
                        filtered=result.filtered,
                        late=result.late,
                    )
                )
        return outputs, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[GroupOutput], bool]:
        # The end of a bounded run: every open hour is written, as the log stands.
        outputs = []
        for ref, state in self.states.items():
            history = self.engines[ref].finalize_at_end(state)
            if history:
                outputs.append(GroupOutput(ref, self.engines[ref].group.topic, history=history))
        return outputs, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        # Serialized now, so later mutations cannot leak into a snapshot bytewax stores afterwards.
        return pickle.dumps(self.states, protocol=pickle.HIGHEST_PROTOCOL)
