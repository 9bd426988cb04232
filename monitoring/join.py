"""Predictions joined with their outcomes, in event time: the state machine monitoring runs on.

A prediction made at `t` pairs with the outcome of its join key (e.g. the trip id) whose time is
in `[t, t + horizon]`. Either may arrive first (two topics, many partitions), so both wait: a
prediction until the watermark passes `t + horizon`, an outcome until it passes the outcome's own
time plus the horizon (the latest prediction that could still pair with it, `t = outcome time`,
is accepted that long). One outcome may pair with several predictions — the `prod` and the
`shadow` model's, or two versions during a deploy — each prediction with one outcome at most.

Every prediction and every outcome is counted exactly once:

- a prediction: `paired`, `unmatched` (no outcome by its horizon), `duplicate` (its id seen
  before) or `late` (it arrived after its own horizon had passed);
- an outcome: `matched` (paired with at least one prediction), `unmatched` (none came),
  `duplicate` (a second outcome for a key) or `late` (the key's predictions had already expired
  unmatched; they stay counted as unmatched).

The **watermark** is the greatest event time seen on either input, minus `lateness_ms`. Keys
that paired or expired are remembered for one more horizon, which is what recognises duplicates
and late outcomes. The state is plain data (`to_json` / `from_json`): the processor snapshots it
with its input offsets, so a restart replays from the snapshot and counts no pair twice.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Outcome", "Pair", "PairJoin", "Prediction"]

Done = Literal["paired", "predictions_expired", "outcome_expired"]


@dataclass(frozen=True)
class Prediction:
    prediction_id: str
    join_key: str
    time_ms: int
    payload: Any = None  # what the caller needs back with the pair (model, version, partition, value…)


@dataclass(frozen=True)
class Outcome:
    join_key: str
    time_ms: int
    value: float


@dataclass(frozen=True)
class Pair:
    prediction: Prediction
    outcome: Outcome


@dataclass
class _Slot:
    outcome: Outcome
    matched: bool = False
    late: bool = False  # it fitted a prediction of its key that had already expired unmatched


@dataclass
class PairJoin:
    horizon_ms: int
    lateness_ms: int = 0
    max_seen_ms: int | None = None
    waiting: dict[str, list[Prediction]] = field(default_factory=dict)  # join key -> predictions
    slots: dict[str, _Slot] = field(default_factory=dict)  # join key -> its outcome, waiting for predictions
    seen_ids: dict[str, int] = field(default_factory=dict)  # prediction id -> remembered until (watermark)
    # join key -> (why, remembered until, the times of its predictions that expired unmatched)
    done: dict[str, tuple[Done, int, list[int]]] = field(default_factory=dict)
    predictions: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    _expiries: list[tuple[int, str, str]] = field(default_factory=list, repr=False)  # (deadline, kind, key)

    def __post_init__(self) -> None:
        if self.horizon_ms <= 0 or self.lateness_ms < 0:
            msg = f"horizon_ms must be > 0 and lateness_ms ≥ 0, got {self.horizon_ms} and {self.lateness_ms}"
            raise ValueError(msg)
        # Rebuilt from the state (a restored join): one deadline per thing that waits or is remembered.
        for key, waiting in self.waiting.items():
            for p in waiting:
                self._expire_at(p.time_ms + self.horizon_ms, "prediction", key)
        for key, slot in self.slots.items():
            self._expire_at(slot.outcome.time_ms + self.horizon_ms, "outcome", key)
        for key, until in self.seen_ids.items():
            self._expire_at(until, "id", key)
        for key, (_, until, _) in self.done.items():
            self._expire_at(until, "done", key)

    @property
    def watermark(self) -> int | None:
        return None if self.max_seen_ms is None else self.max_seen_ms - self.lateness_ms

    def add_prediction(self, prediction: Prediction) -> list[Pair]:
        """Take one prediction; the pair it completes, if its outcome is waiting."""
        pairs: list[Pair] = []
        watermark = self.watermark
        if prediction.prediction_id in self.seen_ids:
            self.predictions["duplicate"] += 1
        elif watermark is not None and watermark > prediction.time_ms + self.horizon_ms:
            self.predictions["late"] += 1
        else:
            self.seen_ids[prediction.prediction_id] = prediction.time_ms + self.horizon_ms
            self._expire_at(prediction.time_ms + self.horizon_ms, "id", prediction.prediction_id)
            slot = self.slots.get(prediction.join_key)
            if slot is not None and self._fits(prediction, slot.outcome):
                self._pair(slot)
                pairs.append(Pair(prediction, slot.outcome))
            else:
                self.waiting.setdefault(prediction.join_key, []).append(prediction)
                self._expire_at(prediction.time_ms + self.horizon_ms, "prediction", prediction.join_key)
        self._advance(prediction.time_ms)
        return pairs

    def add_outcome(self, outcome: Outcome) -> list[Pair]:
        """Take one outcome; the pairs it completes with the predictions waiting for it."""
        key = outcome.join_key
        pairs: list[Pair] = []
        done = self.done.get(key)
        if key in self.slots or (done is not None and done[0] != "predictions_expired"):
            self.outcomes["duplicate"] += 1
        else:
            # After its key's predictions expired, an outcome may still be a later prediction's:
            # it waits as any outcome does, and counts as late only if it pairs with none.
            expired = done[2] if done is not None else []
            late = any(t <= outcome.time_ms <= t + self.horizon_ms for t in expired)
            self.done.pop(key, None)
            slot = self.slots[key] = _Slot(outcome, late=late)
            self._expire_at(outcome.time_ms + self.horizon_ms, "outcome", key)
            waiting = self.waiting.pop(key, [])
            for prediction in waiting:
                if self._fits(prediction, outcome):
                    self._pair(slot)
                    pairs.append(Pair(prediction, outcome))
            left = [p for p in waiting if not self._fits(p, outcome)]
            if left:
                self.waiting[key] = left
        self._advance(outcome.time_ms)
        return pairs

    def close(self) -> None:
        """The inputs ended: everything still waiting expires."""
        for predictions in self.waiting.values():
            self.predictions["unmatched"] += len(predictions)
        for slot in self.slots.values():
            self._settle(slot)
        self.waiting, self.slots = {}, {}

    def counts(self) -> dict[str, dict[str, int]]:
        return {"predictions": dict(self.predictions), "outcomes": dict(self.outcomes)}

    # -- internals ----------------------------------------------------------------------------

    def _fits(self, prediction: Prediction, outcome: Outcome) -> bool:
        return prediction.time_ms <= outcome.time_ms <= prediction.time_ms + self.horizon_ms

    def _settle(self, slot: _Slot) -> None:
        if not slot.matched:
            self.outcomes["late" if slot.late else "unmatched"] += 1

    def _pair(self, slot: _Slot) -> None:
        self.predictions["paired"] += 1
        if not slot.matched:
            slot.matched = True
            self.outcomes["matched"] += 1

    def _expire_at(self, at_ms: int, kind: str, key: str) -> None:
        heapq.heappush(self._expiries, (at_ms, kind, key))

    def _advance(self, time_ms: int) -> None:
        """Move the watermark; expire what it passed (a heap of deadlines: O(log n) an event)."""
        if self.max_seen_ms is not None and time_ms <= self.max_seen_ms:
            return
        self.max_seen_ms = time_ms
        watermark, horizon = time_ms - self.lateness_ms, self.horizon_ms
        while self._expiries and self._expiries[0][0] < watermark:
            _, kind, key = heapq.heappop(self._expiries)
            if kind == "prediction" and key in self.waiting:
                alive = [p for p in self.waiting[key] if p.time_ms + horizon >= watermark]
                gone = [p.time_ms for p in self.waiting[key] if p.time_ms + horizon < watermark]
                self.predictions["unmatched"] += len(gone)
                if key not in self.slots:
                    before = self.done.get(key)
                    times = [*(before[2] if before is not None and before[0] == "predictions_expired" else []), *gone]
                    if before is None or before[0] == "predictions_expired":
                        self.done[key] = ("predictions_expired", watermark + horizon, times)
                        self._expire_at(watermark + horizon, "done", key)
                if alive:
                    self.waiting[key] = alive
                else:
                    del self.waiting[key]
            elif kind == "outcome" and key in self.slots and self.slots[key].outcome.time_ms + horizon < watermark:
                slot = self.slots.pop(key)
                self._settle(slot)
                self.done[key] = ("paired" if slot.matched else "outcome_expired", watermark + horizon, [])
                self._expire_at(watermark + horizon, "done", key)
            elif kind == "id" and self.seen_ids.get(key, watermark) < watermark:
                del self.seen_ids[key]
            elif kind == "done" and key in self.done and self.done[key][1] < watermark:
                del self.done[key]

    # -- state ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Plain data (payloads must be JSON values themselves)."""

        def prediction(p: Prediction) -> list[Any]:
            return [p.prediction_id, p.join_key, p.time_ms, p.payload]

        return {
            "horizon_ms": self.horizon_ms, "lateness_ms": self.lateness_ms, "max_seen_ms": self.max_seen_ms,
            "waiting": {k: [prediction(p) for p in ps] for k, ps in self.waiting.items()},
            "slots": {k: [s.outcome.time_ms, s.outcome.value, s.matched, s.late] for k, s in self.slots.items()},
            "seen_ids": self.seen_ids, "done": {k: list(v) for k, v in self.done.items()},
            "predictions": dict(self.predictions), "outcomes": dict(self.outcomes),
        }  # fmt: skip

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its plain data, rebuilt as `from_json` rebuilds it: half the time of pickling the
        # objects and their deadline heap, which the processor pays at every epoch.
        return PairJoin.from_json, (self.to_json(),)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairJoin:
        return cls(
            horizon_ms=data["horizon_ms"], lateness_ms=data["lateness_ms"], max_seen_ms=data["max_seen_ms"],
            waiting={k: [Prediction(*p) for p in ps] for k, ps in data["waiting"].items()},
            slots={k: _Slot(Outcome(k, t, v), m, late) for k, (t, v, m, late) in data["slots"].items()},
            seen_ids=dict(data["seen_ids"]), done={k: (v[0], v[1], list(v[2])) for k, v in data["done"].items()},
            predictions=Counter(data["predictions"]), outcomes=Counter(data["outcomes"]),
        )  # fmt: skip
