"""The YAML shape of a model spec, as pydantic models (field-level checks only).

Cross-field and semantic checks (feature groups, DSL transforms, training-set columns, trainer
parameters) live in `models.validate`, so every problem of a spec is reported at once.

    model: eta
    owner: marketplace-ml@affresco.dev
    description: Trip duration from request to drop-off.
    task: regression
    label: eta_s
    training_set:
      labels: rides.trips            # a topic of label events, or a .parquet file of label rows
      label_type: trip_completed
      time_field: requested_at       # features are taken as of it; the split is by it
      entities: {zone_supply: pickup_zone}
    request: {distance_km: float, requested_at: int}
    features:
      - zone_demand:requests_10m     # a stored feature
      - distance_km                  # a request-time field
      - name: log_distance           # a transform in the feature DSL
        expr: log(distance_km)
    partitions: {by: [country, city], min_rows: 1000}
    trainer:
      library: xgboost
      params: {n_estimators: 200, max_depth: 6}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "FIELD_KINDS",
    "ModelSpec",
    "PartitionSpec",
    "SearchSpec",
    "TrainerSpec",
    "TrainingSetSpec",
    "TransformSpec",
    "ValidationSpec",
]

Identifier = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
ModelName = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
Scalar = bool | int | float | str
FIELD_KINDS = ("int", "float", "str", "bool")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingSetSpec(_Strict):
    """Either a persisted training set (`path`), or how to build one with the `training-set` code."""

    path: str | None = Field(None, description="A Parquet training set: label rows with `<group>__<feature>` columns.")
    labels: str | None = Field(None, description="A topic of label events, or a .parquet file of label rows.")
    label_type: str = Field("trip_completed", min_length=1, description="Event type of label events (topic labels).")
    time_field: str = Field("requested_at", min_length=1, description="The prediction time of each label row.")
    entities: dict[str, str] = Field(
        default_factory=dict, description="group -> label column, when the group's key field is named otherwise."
    )
    source: Literal["kafka", "archive"] = "kafka"

    @model_validator(mode="after")
    def _one_source(self) -> TrainingSetSpec:
        if (self.path is None) == (self.labels is None):
            msg = "give exactly one of `path` (a Parquet training set) or `labels` (a topic or Parquet of label rows)"
            raise ValueError(msg)
        return self


class TransformSpec(_Strict):
    name: str = Identifier
    expr: str = Field(min_length=1, description="A feature-DSL expression over request fields and stored features.")


class PartitionSpec(_Strict):
    by: list[str] = Field(default_factory=list, max_length=8, description="Partition columns, coarse to fine.")

    @field_validator("by")
    @classmethod
    def _once(cls, by: list[str]) -> list[str]:
        if len(set(by)) != len(by):
            msg = f"each partition column once, got {by}"
            raise ValueError(msg)
        return by

    min_rows: int = Field(1000, ge=1, description="Training rows a node needs to get a model of its own.")
    min_validation_rows: int = Field(50, ge=1, description="Validation rows a node needs to prove it beats its parent.")
    metric: str | None = Field(None, description="Validation metric of the fallback rule (default: rmse / log_loss).")


class ValidationSpec(_Strict):
    fraction: float = Field(0.2, gt=0, lt=1, description="The latest part of the label time range held out.")


class SearchSpec(_Strict):
    strategy: Literal["grid", "random"] = "random"
    trials: int = Field(4, ge=1, le=1000)
    seed: int = 0
    space: dict[str, Annotated[list[Scalar], Field(min_length=1)]] = Field(
        min_length=1, description="Parameter -> the values to try (at least one, each once)."
    )

    @field_validator("space")
    @classmethod
    def _distinct(cls, space: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for name, values in space.items():
            texts = [repr(v) for v in values]
            repeated = sorted({t for t in texts if texts.count(t) > 1})
            if repeated:
                msg = f"{name}: each value once; {', '.join(repeated)} is listed more than once"
                raise ValueError(msg)
        return space


class TrainerSpec(_Strict):
    library: str = Field("xgboost", min_length=1)
    params: dict[str, Scalar] = Field(default_factory=dict)
    search: SearchSpec | None = None


class ModelSpec(_Strict):
    model: str = ModelName
    owner: str = Field(min_length=1)
    description: str = Field(min_length=1)
    task: Literal["regression", "binary"]
    label: str = Field(min_length=1)
    training_set: TrainingSetSpec
    request: dict[str, Literal["int", "float", "str", "bool"]] = Field(
        default_factory=dict, description="Request-time fields and their types (entity and partition columns are str)."
    )
    features: list[str | TransformSpec] = Field(min_length=1, max_length=1000)
    partitions: PartitionSpec = PartitionSpec()
    validation: ValidationSpec = ValidationSpec()
    trainer: TrainerSpec = TrainerSpec()
