"""A validated, compiled feature group: what processors, backfill and serving run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from processors.definitions.spec import FeatureGroupSpec
from processors.dsl import CompiledExpression
from processors.kernels import Agg, WindowSpec
from streams.events.base import Event

__all__ = ["Feature", "FeatureGroup"]


@dataclass(frozen=True)
class Feature:
    """A row-level feature (`window is None`: the expression on the latest event) or an aggregation."""

    name: str
    agg: Agg | None
    window: WindowSpec | None
    expr: CompiledExpression | None

    @property
    def is_row_level(self) -> bool:
        return self.window is None


@dataclass(frozen=True)
class FeatureGroup:
    spec: FeatureGroupSpec
    event_class: type[Event]
    key: CompiledExpression
    filter: CompiledExpression | None
    features: tuple[Feature, ...]
    ttl_ms: int
    freshness_ms: int
    lateness_ms: int
    source_file: str | None = None

    @property
    def name(self) -> str:
        return self.spec.group

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def topic(self) -> str:
        return self.spec.source.topic

    @property
    def event_type(self) -> str:
        return self.event_class.type_name()

    @property
    def ref(self) -> str:
        """`name:v<version>`, how users and logs name one version."""
        return f"{self.name}:v{self.version}"

    @property
    def max_window_ms(self) -> int:
        return max((f.window.window_ms for f in self.features if f.window is not None), default=0)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def fingerprint(self) -> str:
        """sha256 of the semantics: equal fingerprints compute equal values."""
        canonical = json.dumps(self.spec.semantics(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
