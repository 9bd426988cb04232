"""Online/offline consistency: what the stream processor produced vs. a fresh replay of the log.

The replay runs the same `GroupEngine` over the whole source topic into a scratch store; then,
for a sample of entities, the online record and the latest logged `FeatureUpdate` are compared
with the replay's value at the same event time. Entities where the processor is behind the log
(older event time) are counted as lagging, not as mismatches.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backfill.run import BackfillJob, run_backfill
from processors.definitions import FeatureGroup
from state.online import OnlineStore, open_store
from streams.consumer import header
from streams.events.platform import FeatureUpdate
from streams.replay import ReplayRange, replay
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = ["ConsistencyReport", "check_consistency"]

_TOLERANCE = 1e-9


@dataclass
class ConsistencyReport:
    group: str
    sampled: int = 0
    compared: int = 0
    mismatches: int = 0
    lagging: int = 0
    missing_online: int = 0
    invalid_updates: int = 0  # records of the feature topic that are not FeatureUpdate events
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= _TOLERANCE * max(1.0, abs(a), abs(b))
    return bool(a == b)


def _latest_updates(
    group: FeatureGroup, settings: KafkaSettings, report: ConsistencyReport
) -> dict[str, tuple[int, int, FeatureUpdate]]:
    latest: dict[str, tuple[int, int, FeatureUpdate]] = {}
    topic = Topics(settings).features(group.name)
    for batch in replay(topic, ReplayRange(), settings):
        for m in batch:
            try:  # a record someone else wrote on the topic must not stop the check: counted
                update = FeatureUpdate.model_validate_json(m.value() or b"")
                revision = int((header(m, "revision") or b"0").decode())
            except (ValidationError, ValueError):
                report.invalid_updates += 1
                continue
            if update.version != group.version:
                continue
            seen = latest.get(update.entity_key)
            if seen is None or (update.event_time, revision) >= seen[:2]:
                latest[update.entity_key] = (update.event_time, revision, update)
    return latest


def check_consistency(
    group: FeatureGroup,
    settings: KafkaSettings,
    open_online: Callable[[], OnlineStore],
    *,
    sample: int | None = 1000,
    seed: int = 0,
    max_examples: int = 5,
) -> ConsistencyReport:
    report = ConsistencyReport(group.ref)
    updates = _latest_updates(group, settings, report)
    entities = sorted(updates)
    if sample is not None and len(entities) > sample:
        entities = sorted(random.Random(seed).sample(entities, sample))
    report.sampled = len(entities)
    with tempfile.TemporaryDirectory(prefix="affresco-consistency-") as scratch:
        root = Path(scratch)
        job = BackfillJob(
            group, "kafka", 0, int(time.time() * 1000) + 1, root / "offline", root / "cp", load_online=True
        )
        run_backfill(job, settings, lambda: open_store("rocksdb", path=root / "db"))
        keys = [(group.ref, e) for e in entities]
        with open_store("rocksdb", path=root / "db") as replayed_store:
            replayed = replayed_store.get_many(keys, now_ms=0)
    with open_online() as online_store:
        online = online_store.get_many(keys, now_ms=0)
    for key in keys:
        truth = replayed[key]
        if truth is None:
            continue
        candidates = {"feature_update": updates[key[1]][2].values, "online": None}
        times = {"feature_update": updates[key[1]][0], "online": None}
        record = online[key]
        if record is None:
            report.missing_online += 1
        else:
            candidates["online"], times["online"] = record.values, record.event_time
        for where, values in candidates.items():
            if values is None:
                continue
            if times[where] != truth.event_time:
                report.lagging += 1
                continue
            report.compared += 1
            differing = {k: (values.get(k), v) for k, v in truth.values.items() if not _equal(values.get(k), v)}
            if differing:
                report.mismatches += 1
                if len(report.examples) < max_examples:
                    report.examples.append(
                        {"entity": key[1], "source": where, "event_time": truth.event_time,
                         "differences": {k: {"produced": a, "replayed": b} for k, (a, b) in differing.items()}}
                    )  # fmt: skip
    return report
