"""The YAML shape of a feature group, as pydantic models (field-level checks only).

Cross-field and semantic checks (event types, DSL expressions, windows) live in `validate.py`, so
every problem of a file is reported at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from processors.kernels import Agg

__all__ = ["FeatureGroupSpec", "FeatureSpec", "SourceSpec"]

Identifier = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    topic: str = Field(min_length=1)
    event_type: str = Field(min_length=1, description="Only events of this type feed the group.")
    filter: str | None = Field(None, description="DSL predicate; events where it is false or null are skipped.")


class FeatureSpec(_Strict):
    """A row-level feature (`expr` only) or an aggregation (`agg` + `window`, `expr` unless count)."""

    name: str = Identifier
    agg: Agg | None = None
    expr: str | None = None
    window: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> FeatureSpec:
        if self.agg is None:
            if self.expr is None:
                msg = "a row-level feature needs `expr` (or give `agg` and `window` for an aggregation)"
                raise ValueError(msg)
            if self.window is not None:
                msg = "`window` needs `agg` (count, sum, mean, min, max, last, approx_distinct)"
                raise ValueError(msg)
        else:
            if self.window is None:
                msg = f"aggregation {self.agg.value!r} needs a `window` such as 10m, 1h, 1d or 7d"
                raise ValueError(msg)
            if self.expr is None and self.agg is not Agg.count:
                msg = f"aggregation {self.agg.value!r} needs `expr`: the value to aggregate"
                raise ValueError(msg)
        return self


class FeatureGroupSpec(_Strict):
    group: str = Identifier
    version: int = Field(ge=1)
    owner: str = Field(min_length=1)
    description: str = Field(min_length=1)
    entity: str = Identifier
    key: str = Field(min_length=1, description="DSL expression giving the entity key, usually a field.")
    source: SourceSpec
    event_time: str = Field("event_time", min_length=1)
    ttl: str = "7d"
    freshness: str = "1m"
    allowed_lateness: str = "5m"
    features: list[FeatureSpec] = Field(min_length=1)
    tags: dict[str, str] = Field(default_factory=dict)

    def semantics(self) -> dict[str, Any]:
        """What must never change under one version (owner, description and tags may)."""
        data = self.model_dump(mode="json", exclude={"owner", "description", "tags", "freshness"})
        for feature in data["features"]:
            feature.pop("description", None)
        return data
