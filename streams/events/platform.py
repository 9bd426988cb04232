"""The platform's own events: feature updates, model versions, predictions, outcomes, monitoring."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema

from streams.events.base import EpochMs, Event
from streams.events.fields import INT63_MAX, Count, JsonInt, Name, Offset, Partition, TopicName, Version

__all__ = [
    "DEAD_LETTER_REASONS",
    "Alert",
    "DeadLetter",
    "DeadLetterReason",
    "FeatureUpdate",
    "FeatureValue",
    "ModelVersion",
    "MonitoringMetric",
    "Outcome",
    "Prediction",
]

# A feature value: a finite number, a 64-bit int, a bounded string, a bool or null. Larger ints
# travel as floats (JSON readers in Java or Go hold 64 bits).
FeatureValue = (
    float | Annotated[int, JsonInt(-(2**63), INT63_MAX)] | Annotated[str, Field(max_length=2000)] | bool | None
)
Key = Annotated[str, Field(min_length=1, max_length=200)]
# A partition number as a decimal string (JSON object keys are strings).
_PARTITION_KEY = r"^(0|[1-9][0-9]{0,9})$"
_MAX_PARTITIONS = 10_000
# pydantic exports constrained dict keys as `patternProperties`, which lets other keys through;
# `propertyNames` says what is accepted.
SourceOffsets = Annotated[
    dict[Annotated[str, Field(pattern=_PARTITION_KEY)], Offset],
    Field(max_length=_MAX_PARTITIONS),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": _PARTITION_KEY},
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": INT63_MAX},
            "maxProperties": _MAX_PARTITIONS,
        }
    ),
]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
MAX_FEATURES = 1000
OptionalName = Field(None, min_length=1, max_length=200)
MAX_LATENCY_MS = 3_600_000.0


class FeatureUpdate(Event):
    """New values of a feature group for one entity, as of `event_time` (emitted by a processor).

    The feature-update topic is written at least once (a processor that crashes re-emits what it
    had not committed): `dedupe_key` names the fields that identify an update's content.
    """

    key_field = "entity_key"
    dedupe_key = ("group", "version", "entity_key", "source_offsets")
    event_type: Literal["feature_update"] = "feature_update"
    group: str = Name
    version: Version = Field(description="Version of the feature group.")
    entity_key: str = Name
    values: dict[Key, FeatureValue] = Field(max_length=MAX_FEATURES)
    source_topic: str | None = Field(None, min_length=1, max_length=249)
    source_partition: Partition | None = None
    source_offset: Offset | None = None
    source_offsets: SourceOffsets = Field(
        default_factory=dict,
        description="Per source partition (as a decimal string), the offset of this entity's last accepted "
        "event in it; with group, version and entity_key it identifies the update's content - the dedupe key "
        "of the feature-update topic, whose output is at-least-once.",
    )


class ModelVersion(Event):
    """A change in a model's lifecycle, on the compacted `affresco.models` topic."""

    key_field = "model"
    event_type: Literal["model_version"] = "model_version"
    model: str = Name
    version: Version
    action: Literal["registered", "deployed", "rolled_back", "retired"]
    bundle_uri: str | None = Field(None, max_length=2000)
    sha256: dict[Annotated[str, Field(min_length=1, max_length=255)], Sha256] = Field(
        default_factory=dict, max_length=MAX_FEATURES, description="File name -> sha256 (hex) of the bundle."
    )
    metrics: dict[Key, float] = Field(default_factory=dict, max_length=MAX_FEATURES)
    reason: str | None = Field(None, max_length=2000)


class Prediction(Event):
    """One served prediction, with the features it used (for monitoring and training logs)."""

    key_field = "request_id"
    event_type: Literal["prediction"] = "prediction"
    request_id: str = Name
    model: str = Name
    model_version: Version
    partition: str = Field(
        "global", min_length=1, max_length=200, description="Partition node that served it, e.g. 'global/US/nyc'."
    )
    entity_keys: dict[Key, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict, max_length=100)
    features: dict[Key, FeatureValue] = Field(default_factory=dict, max_length=MAX_FEATURES)
    prediction: float
    latency_ms: float | None = Field(None, ge=0, le=MAX_LATENCY_MS)


class Outcome(Event):
    """The observed truth for a prediction (e.g. a trip's actual ETA), joined on `join_key`."""

    key_field = "join_key"
    event_type: Literal["outcome"] = "outcome"
    join_key: str = Name
    label: str = Name
    value: float
    model: str | None = OptionalName


class MonitoringMetric(Event):
    """A metric of a model (accuracy, drift, freshness...) over a window of predictions."""

    key_field = "model"
    event_type: Literal["monitoring_metric"] = "monitoring_metric"
    model: str = Name
    model_version: Version | None = None
    partition: str | None = OptionalName
    metric: str = Name
    value: float
    window_start: EpochMs = Field(description="Start of the window, UTC epoch milliseconds.")
    window_end: EpochMs = Field(description="End of the window, UTC epoch milliseconds.")
    count: Count = Field(0, description="Predictions in the window.")


class Alert(Event):
    """A monitoring rule fired."""

    key_field = "model"
    event_type: Literal["alert"] = "alert"
    model: str = Name
    rule: str = Name
    severity: Literal["info", "warning", "critical"]
    message: str = Field(max_length=2000)
    metric: str | None = OptionalName
    value: float | None = None
    threshold: float | None = None


DeadLetterReason = Literal[
    "malformed_json",
    "validation_error",
    "unknown_event_type",
    "unknown_schema_version",
    "oversized",
    "future_event",
    "late_event",
    "processing_error",
    "output_rejected",
]
DEAD_LETTER_REASONS: tuple[str, ...] = DeadLetterReason.__args__  # type: ignore[attr-defined]

# base64 of the 64 KiB the DLQ keeps of an original key or value.
_MAX_B64 = 4 * ((64 * 1024 + 2) // 3)


class DeadLetter(Event):
    """An input that could not be accepted, with the reason and where it came from.

    `original_value_b64` holds the exact original bytes (base64), truncated to `max_original_bytes`
    of the DLQ settings for oversized inputs (`original_size` tells the real size); the key likewise.
    The DLQ record's Kafka key is the original record's key, not `source_topic`. Dead letters are
    written at least once: `dedupe_key` identifies one rejection.
    """

    key_field = "source_topic"
    key_note = "The original record's key (the bytes of original_key_b64; no key when it had none)."
    dedupe_key = ("source_topic", "source_partition", "source_offset", "group")
    event_type: Literal["dead_letter"] = "dead_letter"
    source_topic: str = TopicName
    source_partition: Partition | None = None
    source_offset: Offset | None = None
    reason: DeadLetterReason
    error: str = Field(max_length=20_000)
    expected_type: str | None = OptionalName
    group: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="The feature group ref (e.g. 'zone_demand:v1') that rejected it.",
    )
    step: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Where it failed: 'route', 'decode', 'filter/key', 'aggregate', 'produce feature update', ...",
    )
    original_key_b64: str | None = Field(None, max_length=_MAX_B64)
    original_value_b64: str = Field(max_length=_MAX_B64)
    original_size: Count = Field(description="Size of the original value in bytes.")
    truncated: bool = False
