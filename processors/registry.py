"""The feature registry: applied group versions on a compacted Kafka topic.

Key `<group>:v<version>`; value a `FeatureGroupVersion` event. The semantics of an applied version
are immutable: re-applying a changed definition under the same version is refused with a diff.
Owner, description, tags and the freshness target may change in place; deprecation is recorded.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import Field

from processors.definitions import FeatureGroup, FeatureGroupSpec, compile_spec
from processors.exceptions import DefinitionError, RegistryError
from streams.admin import TopicAdmin, TopicSpec
from streams.events.base import Event
from streams.producer import EventProducer, event_headers
from streams.replay import ReplayRange, replay
from streams.settings import KafkaSettings

__all__ = ["ApplyOutcome", "FeatureGroupVersion", "FeatureRegistry"]


class FeatureGroupVersion(Event):
    """One applied version of a feature group (the registry's record)."""

    key_field = "ref"
    event_type: Literal["feature_group_version"] = "feature_group_version"
    ref: str
    group: str
    version: int = Field(ge=1)
    fingerprint: str
    spec: dict[str, Any]
    status: Literal["active", "deprecated"] = "active"
    deprecation_reason: str | None = None


@dataclass(frozen=True)
class ApplyOutcome:
    ref: str
    action: Literal["registered", "updated", "unchanged"]


def _diff(old: dict[str, Any], new: dict[str, Any], ref: str) -> str:
    a = yaml.safe_dump(old, sort_keys=True).splitlines()
    b = yaml.safe_dump(new, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(a, b, f"{ref} (applied)", f"{ref} (new)", lineterm=""))


class FeatureRegistry:
    def __init__(self, settings: KafkaSettings | None = None) -> None:
        self.settings = settings or KafkaSettings()
        self.topic = f"{self.settings.topic_prefix}.registry.features"

    def _ensure(self) -> None:
        TopicAdmin(self.settings).ensure([TopicSpec(self.topic, partitions=1, compacted=True)])

    def records(self) -> dict[str, FeatureGroupVersion]:
        """The latest record of every applied version."""
        self._ensure()
        latest: dict[str, FeatureGroupVersion] = {}
        for batch in replay(self.topic, ReplayRange(), self.settings):
            for m in batch:
                value = m.value()
                if value:
                    rec = FeatureGroupVersion.model_validate_json(value)
                    latest[rec.ref] = rec
        return latest

    def apply(self, groups: list[FeatureGroup]) -> list[ApplyOutcome]:
        """Register new versions; refuse (all at once, applying nothing) changed semantics under a version."""
        current = self.records()
        refusals: list[str] = []
        plan: list[tuple[FeatureGroupVersion, ApplyOutcome]] = []
        for g in groups:
            spec = g.spec.model_dump(mode="json")
            old = current.get(g.ref)
            if old is not None and old.fingerprint != g.fingerprint():
                old_sem = FeatureGroupSpec.model_validate(old.spec).semantics()
                refusals.append(
                    f"{g.ref}: the semantics of an applied version are immutable; give the change a new "
                    f"version (version: {g.version + 1}).\n{_diff(old_sem, g.spec.semantics(), g.ref)}"
                )
                continue
            if old is not None and old.spec == spec:
                plan.append((old, ApplyOutcome(g.ref, "unchanged")))
                continue
            record = FeatureGroupVersion(
                event_time=int(time.time() * 1000),
                ref=g.ref,
                group=g.name,
                version=g.version,
                fingerprint=g.fingerprint(),
                spec=spec,
                status=old.status if old else "active",
                deprecation_reason=old.deprecation_reason if old else None,
            )
            plan.append((record, ApplyOutcome(g.ref, "updated" if old else "registered")))
        if refusals:
            raise RegistryError("\n\n".join(refusals))
        self._publish([rec for rec, outcome in plan if outcome.action != "unchanged"])
        return [outcome for _, outcome in plan]

    def deprecate(self, group: str, version: int, reason: str) -> FeatureGroupVersion:
        ref = f"{group}:v{version}"
        old = self.records().get(ref)
        if old is None:
            msg = f"{ref} is not registered (see `affresco features list`)"
            raise RegistryError(msg)
        record = old.model_copy(
            update={"status": "deprecated", "deprecation_reason": reason, "event_time": int(time.time() * 1000)}
        )
        self._publish([record])
        return record

    def _publish(self, records: list[FeatureGroupVersion]) -> None:
        if not records:
            return
        with EventProducer(self.settings) as producer:
            for rec in records:
                producer.send_raw(
                    self.topic, rec.model_dump_json().encode(), key=rec.ref, headers=event_headers(FeatureGroupVersion)
                )

    def resolve(self, names: list[str]) -> list[tuple[FeatureGroup, FeatureGroupVersion]]:
        """Compile the named groups (`name` = its latest version, or `name:vN`) from the registry."""
        records = self.records()
        out = []
        for name in names:
            if ":v" in name:
                rec = records.get(name)
            else:
                versions = [r for r in records.values() if r.group == name]
                rec = max(versions, key=lambda r: r.version) if versions else None
            if rec is None:
                known = ", ".join(sorted(records)) or "none yet; run `affresco features apply <dir>`"
                msg = f"feature group {name!r} is not registered (registered: {known})"
                raise RegistryError(msg)
            group, problems = compile_spec(rec.spec, f"registry:{rec.ref}")
            if group is None:
                raise DefinitionError(problems)
            out.append((group, rec))
        return out
