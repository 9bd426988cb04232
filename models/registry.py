"""The model registry: `ModelVersion` events on the compacted `affresco.models` topic.

The registry is a log, not a database: its state at any moment is a replay of the topic, folded by
`RegistryState.fold`. Every record is under a key whose latest record is the whole state of one
thing, so compaction (which keeps only the latest record per key) never changes the state:

- `<model>/v<version>`: a version's lifecycle (registered, retired), with its bundle, checksums,
  metrics and task;
- `<model>@<alias>`: where an alias points and where it pointed before (most recent first), so a
  rollback needs no older record.

`ModelRegistry` validates each action against the replayed state and emits nothing when it
refuses (`ModelRegistryError` says why and what to do instead). Two writers acting at the same
moment are not serialized: each validates against what it replayed, and the topic's order decides.

>>> registry = ModelRegistry(KafkaSettings())                        # doctest: +SKIP
>>> registry.deploy("eta", 3, "prod", reason="beats v2 on rmse")     # doctest: +SKIP
>>> registry.state().resolve("eta", "prod").bundle_uri               # doctest: +SKIP
'/data/bundles/eta/v3'
"""

from __future__ import annotations

import logging
import numbers
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from models.exceptions import ModelRegistryError
from models.leaderboard import (
    BASELINES,
    COUNT_METRICS,
    PRIMARY_METRIC,
    TASK_METRICS,
    LeaderboardRow,
    infer_task,
    leaderboard,
)
from streams.admin import TopicAdmin
from streams.events.platform import MAX_PREVIOUS, ModelTask, ModelVersion
from streams.producer import EventProducer
from streams.replay import ReplayRange, replay
from streams.settings import KafkaSettings
from streams.topics import Topics

__all__ = [
    "BASELINES",
    "COUNT_METRICS",
    "PRIMARY_METRIC",
    "TASK_METRICS",
    "AliasRecord",
    "LeaderboardRow",
    "ModelRegistry",
    "RegistryState",
    "VersionRecord",
    "infer_task",
    "leaderboard",
]

log = logging.getLogger(__name__)

# A pattern's `$` in Python's `re` also matches before a trailing newline: fullmatch the body instead.
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_VERSION = re.compile(r"[vV]?([1-9][0-9]{0,9})")


# -- the state -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionRecord:
    """One registered version of a model, as its latest record says."""

    model: str
    version: int
    status: Literal["registered", "retired"]
    bundle_uri: str
    sha256: Mapping[str, str]
    metrics: Mapping[str, float]
    task: ModelTask | None
    registered_at: int | None  # UTC epoch ms; None if a retired record did not say
    retired_at: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class AliasRecord:
    """Where an alias of a model points (`version`) and pointed before (`previous`, most recent first)."""

    model: str
    alias: str
    version: int
    previous: tuple[int, ...]
    since: int  # UTC epoch ms of the move
    action: Literal["deployed", "rolled_back"]
    reason: str | None = None


@dataclass
class RegistryState:
    """Every model version and alias, folded from `ModelVersion` events.

    Each record replaces the state of its key (a version, or an alias) whole: folding the events of
    a compacted topic gives the same state as folding every event ever written.
    """

    versions: dict[tuple[str, int], VersionRecord] = field(default_factory=dict)
    aliases: dict[tuple[str, str], AliasRecord] = field(default_factory=dict)

    @classmethod
    def fold(cls, events: Iterable[ModelVersion]) -> RegistryState:
        """The state after `events`, in log order (a pure function of the events)."""
        state = cls()
        for event in events:
            state._apply(event)
        return state

    def _apply(self, e: ModelVersion) -> None:
        if e.action == "registered" or e.action == "retired":
            retired = e.action == "retired"
            self.versions[(e.model, e.version)] = VersionRecord(
                model=e.model,
                version=e.version,
                status="retired" if retired else "registered",
                bundle_uri=e.bundle_uri or "",  # required by the event for both actions
                sha256=dict(e.sha256),
                metrics=dict(e.metrics),
                task=e.task,
                registered_at=e.registered_at if retired else e.event_time,
                retired_at=e.event_time if retired else None,
                reason=e.reason,
            )
        else:
            alias = e.alias or ""  # required by the event for alias actions
            self.aliases[(e.model, alias)] = AliasRecord(
                e.model, alias, e.version, tuple(e.previous), e.event_time, e.action, e.reason
            )

    # -- reading ------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Every model with a version or an alias, sorted."""
        return sorted({m for m, _ in self.versions} | {m for m, _ in self.aliases})

    def next_version(self, model: str) -> int:
        """One more than the highest version of `model` ever registered (1 for a new model)."""
        return max((v for m, v in self.versions if m == model), default=0) + 1

    def versions_of(self, model: str) -> list[VersionRecord]:
        """The versions of `model` (registered and retired), oldest first; empty for an unknown model."""
        return sorted((r for (m, _), r in self.versions.items() if m == model), key=lambda r: r.version)

    def aliases_of(self, model: str) -> list[AliasRecord]:
        """The aliases of `model`, by name; empty for an unknown model."""
        return sorted((r for (m, _), r in self.aliases.items() if m == model), key=lambda r: r.alias)

    def aliases_pointing_at(self, model: str, version: int) -> list[str]:
        """The names of the aliases of `model` that point at `version`."""
        return [a.alias for a in self.aliases_of(model) if a.version == version]

    def version(self, model: str, version: int) -> VersionRecord:
        """The record of `model` v`version`; `ModelRegistryError` if the model or the version is unknown."""
        self.check_model(model)
        record = self.versions.get((model, version))
        if record is None:
            known = ", ".join(f"v{r.version}" for r in self.versions_of(model)) or "none"
            msg = f"model {model!r} has no version {version} (versions: {known})"
            raise ModelRegistryError(msg)
        return record

    def alias(self, model: str, alias: str) -> AliasRecord:
        """Where alias `alias` of `model` points; `ModelRegistryError` if the model or the alias is unknown."""
        self.check_model(model)
        record = self.aliases.get((model, alias))
        if record is None:
            known = ", ".join(f"{a.alias} -> v{a.version}" for a in self.aliases_of(model)) or "none yet"
            msg = (
                f"model {model!r} has no alias {alias!r} (aliases: {known}); "
                f"deploy a version to it first: affresco models deploy {model} --version N --alias {alias}"
            )
            raise ModelRegistryError(msg)
        return record

    def resolve(self, model: str, alias_or_version: str) -> VersionRecord:
        """The version an alias (`prod`) or a version (`3`, `v3`) names.

        >>> state.resolve("eta", "prod").version                        # doctest: +SKIP
        3
        """
        text = alias_or_version.strip()
        number = _VERSION.fullmatch(text)
        if number:
            return self.version(model, int(number.group(1)))
        if not _ALIAS.fullmatch(text):
            msg = (
                f"expected a version (3 or v3) or an alias (such as prod) of model {model!r}, got {alias_or_version!r}"
            )
            raise ModelRegistryError(msg)
        target = self.alias(model, text)
        record = self.versions.get((model, target.version))
        if record is None:
            msg = f"alias {model}@{text} points at v{target.version}, which the registry has no record of"
            raise ModelRegistryError(msg)
        return record

    # -- actions: the event each would emit, or ModelRegistryError -----------------------------------------
    def plan_register(
        self,
        model: str,
        version: int,
        bundle_uri: str,
        sha256: Mapping[str, str],
        metrics: Mapping[str, float],
        task: ModelTask | None,
        reason: str | None = None,
        *,
        at_ms: int,
    ) -> ModelVersion:
        """The event registering a new version; refused for a version that exists already."""
        existing = self.versions.get((model, version))
        if existing is not None:
            msg = (
                f"{model} v{version} is registered already ({existing.status}, bundle {existing.bundle_uri}); "
                f"a version never changes: register v{self.next_version(model)} instead"
            )
            raise ModelRegistryError(msg)
        return _event(
            at_ms,
            "register",
            model=model,
            version=version,
            action="registered",
            bundle_uri=bundle_uri,
            sha256=dict(sha256),
            # numpy scalars are Reals but not floats to a strict model
            metrics={k: float(v) if isinstance(v, numbers.Real) else v for k, v in metrics.items()},
            task=task,
            reason=reason,
        )

    def plan_deploy(
        self, model: str, version: int, alias: str, reason: str | None = None, *, at_ms: int
    ) -> ModelVersion:
        """The event pointing `alias` at `version`; where it pointed becomes the first of its `previous`."""
        _check_alias(alias)
        target = self.version(model, version)
        if target.status == "retired":
            registered = ", ".join(f"v{r.version}" for r in self.versions_of(model) if r.status == "registered")
            msg = (
                f"{model} v{version} is retired and cannot be deployed; deploy a registered version "
                f"({registered or 'none left: register a new one'})"
            )
            raise ModelRegistryError(msg)
        current = self.aliases.get((model, alias))
        if current is not None and current.version == version:
            msg = f"{model}@{alias} points at v{version} already; nothing to deploy"
            raise ModelRegistryError(msg)
        previous: list[int] = []
        if current is not None:
            # The new target leaves the history: rolling back to where the alias is makes no sense.
            previous = [current.version, *(v for v in current.previous if v not in (version, current.version))]
        return _event(
            at_ms,
            "deploy",
            model=model,
            version=version,
            action="deployed",
            alias=alias,
            previous=previous[:MAX_PREVIOUS],
            task=target.task,
            reason=reason,
        )

    def plan_rollback(self, model: str, alias: str, reason: str | None = None, *, at_ms: int) -> ModelVersion:
        """The event pointing `alias` back at the most recent of its previous versions that is not retired."""
        _check_alias(alias)
        current = self.alias(model, alias)
        live = [i for i, v in enumerate(current.previous) if self._deployable(model, v)]
        if not live:
            skipped = ", ".join(f"v{v}" for v in current.previous)
            why = f" ({skipped}: retired or unknown)" if skipped else ""
            msg = (
                f"{model}@{alias} points at v{current.version} and has no earlier version to roll back to{why}; "
                f"deploy one instead: affresco models deploy {model} --version N --alias {alias}"
            )
            raise ModelRegistryError(msg)
        # Retired versions before the target are skipped and leave the history with it.
        target = self.versions[(model, current.previous[live[0]])]
        return _event(
            at_ms,
            "roll back",
            model=model,
            version=target.version,
            action="rolled_back",
            alias=alias,
            previous=list(current.previous[live[0] + 1 :]),
            task=target.task,
            reason=reason or f"rolled back from v{current.version}",
        )

    def plan_retire(self, model: str, version: int, reason: str | None = None, *, at_ms: int) -> ModelVersion:
        """The event retiring a version no alias points at; it repeats everything about the version."""
        record = self.version(model, version)
        if record.status == "retired":
            msg = f"{model} v{version} is retired already"
            raise ModelRegistryError(msg)
        pointing = self.aliases_pointing_at(model, version)
        if pointing:
            names = ", ".join(pointing)
            first = pointing[0]
            msg = (
                f"{model} v{version} is what alias {names} points at; move the alias first "
                f"(affresco models deploy {model} --version N --alias {first}, or "
                f"affresco models rollback {model} --alias {first}), then retire it"
            )
            raise ModelRegistryError(msg)
        return _event(
            at_ms,
            "retire",
            model=model,
            version=version,
            action="retired",
            bundle_uri=record.bundle_uri,
            sha256=dict(record.sha256),
            metrics=dict(record.metrics),
            task=record.task,
            registered_at=record.registered_at,
            reason=reason,
        )

    def _deployable(self, model: str, version: int) -> bool:
        record = self.versions.get((model, version))
        return record is not None and record.status == "registered"

    def check_model(self, model: str) -> None:
        """`ModelRegistryError` unless `model` has a version or an alias."""
        if not any(m == model for m, _ in self.versions) and not any(m == model for m, _ in self.aliases):
            known = ", ".join(self.models()) or "none yet"
            msg = f"model {model!r} is not registered (models: {known})"
            raise ModelRegistryError(msg)


# -- the registry on Kafka ----------------------------------------------------------------------------
def _now_ms() -> int:
    return int(time.time() * 1000)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}" for err in exc.errors())


def _event(at_ms: int, what: str, **fields: Any) -> ModelVersion:
    try:
        return ModelVersion(event_time=at_ms, **fields)
    except ValidationError as exc:
        msg = f"cannot {what} {fields.get('model')} v{fields.get('version')}: {_errors(exc)}"
        raise ModelRegistryError(msg) from None


def _check_alias(alias: str) -> None:
    if not _ALIAS.fullmatch(alias):
        msg = f"alias {alias!r}: expected a lowercase name of 1-63 letters, digits, '_' or '-' starting with a letter"
        raise ModelRegistryError(msg)


class ModelRegistry:
    """Register, deploy, roll back and retire model versions: each action one durable event.

    Every action replays the topic, validates against that state and then produces one event with
    `acks=all`, flushed before returning; a refused action emits nothing.
    """

    def __init__(self, settings: KafkaSettings | None = None, *, clock: Callable[[], int] = _now_ms) -> None:
        self.settings = settings or KafkaSettings()
        self.topics = Topics(self.settings)
        self.topic = self.topics.models
        self._clock = clock

    def ensure_topic(self) -> None:
        """Create the registry topic (1 partition, compacted) if it does not exist."""
        TopicAdmin(self.settings).ensure([self.topics.models_spec()])

    def events(self) -> list[ModelVersion]:
        """The latest event of every key on the topic, in log order (what compaction leaves)."""
        self.ensure_topic()
        latest: dict[str, ModelVersion] = {}
        for batch in replay(self.topic, ReplayRange(), self.settings):
            for m in batch:
                raw_key, value = m.key(), m.value()
                key = raw_key.decode(errors="replace") if raw_key is not None else None
                if value is None:  # a tombstone deletes its key
                    if key is not None:
                        latest.pop(key, None)
                    continue
                try:
                    event = ModelVersion.model_validate_json(value)
                except ValidationError as exc:
                    log.warning("%s offset %s: not a model_version event, ignored: %s", self.topic, m.offset(), exc)
                    continue
                # Compaction goes by the record's key: so does this, so compaction never changes the state.
                key = key if key is not None else event.key()
                latest.pop(key, None)
                latest[key] = event
        return list(latest.values())

    def state(self) -> RegistryState:
        """The registry as of now: a replay of the whole topic."""
        return RegistryState.fold(self.events())

    def register(
        self,
        model: str,
        version: int,
        bundle_uri: str,
        sha256: Mapping[str, str],
        metrics: Mapping[str, float],
        task: ModelTask | None,
        reason: str | None = None,
    ) -> ModelVersion:
        """Register a new version with its bundle and metrics; refuse a version that exists already."""
        return self._emit(
            self.state().plan_register(model, version, bundle_uri, sha256, metrics, task, reason, at_ms=self._clock())
        )

    def deploy(self, model: str, version: int, alias: str, reason: str | None = None) -> ModelVersion:
        """Point `alias` at a registered `version`; where it pointed is kept (first of `previous`)."""
        _check_alias(alias)  # before any Kafka round trip
        return self._emit(self.state().plan_deploy(model, version, alias, reason, at_ms=self._clock()))

    def rollback(self, model: str, alias: str, reason: str | None = None) -> ModelVersion:
        """Point `alias` back at the most recent of its previous versions that is not retired."""
        _check_alias(alias)
        return self._emit(self.state().plan_rollback(model, alias, reason, at_ms=self._clock()))

    def retire(self, model: str, version: int, reason: str | None = None) -> ModelVersion:
        """Retire a version no alias points at (say which alias, and how to move it, otherwise)."""
        return self._emit(self.state().plan_retire(model, version, reason, at_ms=self._clock()))

    def _emit(self, event: ModelVersion) -> ModelVersion:
        # acks=all, flushed on leaving the block (raises ProduceError if the broker did not take it).
        # Not idempotent: an idempotent producer waits ~0.5 s for its producer id, and a registry
        # record written twice by a retry changes nothing (the same event under the same key).
        with EventProducer(self.settings, linger_ms=0, config={"enable.idempotence": False}) as producer:
            producer.send(self.topic, event)
        log.info("%s: %s %s v%s%s", self.topic, event.action, event.model, event.version,
                 f" as {event.alias}" if event.alias else "")  # fmt: skip
        return event
