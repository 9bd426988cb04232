"""The models the service can serve, following the registry topic (`affresco.models`).

The catalog replays the topic (the registry's state at any moment is a replay of it), loads each
version an alias points at — bundle checked against the event's sha256 first — and swaps the
whole mapping in one assignment, so a request sees either the old models or the new ones, never
a half-built set, and no request fails during a swap. A bundle that fails to load is reported and
skipped; whatever served before keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.bundle import load_bundle
from models.exceptions import ModelsError
from models.registry import ModelRegistry, RegistryState
from processors.definitions import FeatureGroup
from serving.model import LoadedModel
from streams.exceptions import StreamsError
from streams.settings import KafkaSettings

__all__ = ["Catalog", "Served"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """What a (model, alias) serves, and the registry event that put it there."""

    model: LoadedModel
    alias: str
    action: str
    since_ms: int


@dataclass
class Catalog:
    settings: KafkaSettings
    groups: Callable[[list[str]], dict[str, FeatureGroup]]  # ["name:vN", …] -> compiled groups by name
    aliases: dict[tuple[str, str], Served] = field(default_factory=dict)
    versions: dict[tuple[str, int], LoadedModel] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # "model vN" -> why it could not be loaded
    refreshed: bool = False

    def lookup(self, name: str, alias: str | None, version: int | None) -> LoadedModel | None:
        if version is not None:
            return self.versions.get((name, version))
        served = self.aliases.get((name, alias or "prod"))
        return served.model if served is not None else None

    def names(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for (name, alias), served in sorted(self.aliases.items()):
            out.setdefault(name, []).append(f"{alias} -> v{served.model.version}")
        return out

    def refresh(self) -> None:
        """Read the topic and load what changed; keep serving the old set on any failure."""
        try:
            state = ModelRegistry(self.settings).state()
        except (StreamsError, ModelsError) as exc:
            log.warning("model registry unreadable, keeping the loaded models: %s", exc)
            return
        versions = dict(self.versions)
        aliases: dict[tuple[str, str], Served] = {}
        errors: dict[str, str] = {}
        for (name, alias), record in state.aliases.items():
            model = versions.get((name, record.version)) or self._load(state, name, record.version, errors)
            if model is None:
                previous = self.aliases.get((name, alias))
                if previous is not None:
                    aliases[(name, alias)] = previous  # what served before keeps serving
                continue
            versions[(name, record.version)] = model
            aliases[(name, alias)] = Served(model, alias, record.action, record.since)
        live = {(s.model.name, s.model.version) for s in aliases.values()}
        retired = {key for key, v in state.versions.items() if v.status == "retired"}
        self.versions = {key: m for key, m in versions.items() if key in live or key not in retired}
        self.aliases, self.errors, self.refreshed = aliases, errors, True  # one assignment each: no half state

    def _load(self, state: RegistryState, name: str, version: int, errors: dict[str, str]) -> LoadedModel | None:
        record = state.version(name, version)
        try:
            bundle = load_bundle(record.bundle_uri, record.sha256)
            wanted = [f"{g}:v{spec['version']}" for g, spec in bundle.manifest["feature_groups"].items()]
            model = LoadedModel.from_bundle(bundle, self.groups(wanted))
        except (ModelsError, StreamsError, KeyError, ValueError) as exc:
            errors[f"{name} v{version}"] = str(exc)
            log.error("cannot load %s v%s: %s", name, version, exc)
            return None
        log.info("loaded %s v%s from %s", name, version, record.bundle_uri)
        return model

    def follow(self, interval_s: float, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(interval_s):
                self.refresh()

        thread = threading.Thread(target=loop, name="model-catalog", daemon=True)
        thread.start()
        return thread

    def describe(self) -> list[dict[str, Any]]:
        return [{"model": name, "alias": alias, "version": s.model.version, "bundle": s.model.uri,
                 "event": s.action, "since_ms": s.since_ms}
                for (name, alias), s in sorted(self.aliases.items())]  # fmt: skip
