"""The platform's own events: feature updates, model versions, predictions, outcomes, monitoring."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streams.events.base import Event, EventTime

__all__ = [
    "Alert",
    "DeadLetter",
    "FeatureUpdate",
    "FeatureValue",
    "ModelVersion",
    "MonitoringMetric",
    "Outcome",
    "Prediction",
]

FeatureValue = float | int | str | bool | None
Name = Field(min_length=1, max_length=200)


class FeatureUpdate(Event):
    """New values of a feature group for one entity, as of `event_time` (emitted by a processor)."""

    key_field = "entity_key"
    event_type: Literal["feature_update"] = "feature_update"
    group: str = Name
    version: int = Field(ge=1)
    entity_key: str = Name
    values: dict[str, FeatureValue]
    source_topic: str | None = None
    source_partition: int | None = Field(None, ge=0)
    source_offset: int | None = Field(None, ge=0)


class ModelVersion(Event):
    """A change in a model's lifecycle, on the compacted `affresco.models` topic."""

    key_field = "model"
    event_type: Literal["model_version"] = "model_version"
    model: str = Name
    version: int = Field(ge=1)
    action: Literal["registered", "deployed", "rolled_back", "retired"]
    bundle_uri: str | None = None
    sha256: dict[str, str] = Field(default_factory=dict, description="File name -> sha256 of the bundle.")
    metrics: dict[str, float] = Field(default_factory=dict)
    reason: str | None = None


class Prediction(Event):
    """One served prediction, with the features it used (for monitoring and training logs)."""

    key_field = "request_id"
    event_type: Literal["prediction"] = "prediction"
    request_id: str = Name
    model: str = Name
    model_version: int = Field(ge=1)
    partition: str = Field("global", description="Partition node that served it, e.g. 'global/US/nyc'.")
    entity_keys: dict[str, str] = Field(default_factory=dict)
    features: dict[str, FeatureValue] = Field(default_factory=dict)
    prediction: float
    latency_ms: float | None = Field(None, ge=0)


class Outcome(Event):
    """The observed truth for a prediction (e.g. a trip's actual ETA), joined on `join_key`."""

    key_field = "join_key"
    event_type: Literal["outcome"] = "outcome"
    join_key: str = Name
    label: str = Name
    value: float
    model: str | None = None


class MonitoringMetric(Event):
    """A metric of a model (accuracy, drift, freshness...) over a window of predictions."""

    key_field = "model"
    event_type: Literal["monitoring_metric"] = "monitoring_metric"
    model: str = Name
    model_version: int | None = Field(None, ge=1)
    partition: str | None = None
    metric: str = Name
    value: float
    window_start: int = EventTime
    window_end: int = EventTime
    count: int = Field(0, ge=0)


class Alert(Event):
    """A monitoring rule fired."""

    key_field = "model"
    event_type: Literal["alert"] = "alert"
    model: str = Name
    rule: str = Name
    severity: Literal["info", "warning", "critical"]
    message: str = Field(max_length=2000)
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None


class DeadLetter(Event):
    """An input that could not be accepted, with the reason and where it came from.

    `original_value_b64` holds the exact original bytes (base64), truncated to `max_original_bytes`
    of the DLQ settings for oversized inputs (`original_size` tells the real size).
    """

    key_field = "source_topic"
    event_type: Literal["dead_letter"] = "dead_letter"
    source_topic: str = Name
    source_partition: int | None = None
    source_offset: int | None = None
    reason: Literal[
        "malformed_json",
        "validation_error",
        "unknown_event_type",
        "oversized",
        "late_event",
        "processing_error",
    ]
    error: str = Field(max_length=20_000)
    expected_type: str | None = None
    original_key_b64: str | None = None
    original_value_b64: str
    original_size: int = Field(ge=0)
    truncated: bool = False
