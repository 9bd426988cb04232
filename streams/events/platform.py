"""The platform's own events: feature updates, model versions, predictions, outcomes, monitoring."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, WithJsonSchema, model_validator

from streams.events.base import EpochMs, Event
from streams.events.fields import INT63_MAX, Count, JsonInt, Name, Offset, Partition, TopicName, Version

__all__ = [
    "ALIAS_PATTERN",
    "DEAD_LETTER_REASONS",
    "MAX_PREVIOUS",
    "Alert",
    "DeadLetter",
    "DeadLetterReason",
    "FeatureUpdate",
    "FeatureValue",
    "ModelAction",
    "ModelTask",
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


ModelAction = Literal["registered", "deployed", "rolled_back", "retired"]
ModelTask = Literal["regression", "binary"]
# An alias is a short lowercase name (`prod`, `canary`, `shadow-eu`): it cannot contain '/' or '@',
# which keeps the record keys below unambiguous.
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
MAX_PREVIOUS = 100
_VERSION_ACTIONS = ("registered", "retired")
_ALIAS_ACTIONS = ("deployed", "rolled_back")
_BUNDLE_URI_MAX = 2000
# What the model validator below checks, as JSON Schema (so the schema and the decoder agree).
_MODEL_VERSION_RULES: dict[str, Any] = {
    "allOf": [
        {
            "if": {"properties": {"action": {"enum": list(_ALIAS_ACTIONS)}}, "required": ["action"]},
            "then": {"properties": {"alias": {"type": "string", "pattern": ALIAS_PATTERN}}, "required": ["alias"]},
        },
        {
            "if": {"properties": {"action": {"enum": list(_VERSION_ACTIONS)}}, "required": ["action"]},
            "then": {
                "properties": {
                    "bundle_uri": {"type": "string", "minLength": 1, "maxLength": _BUNDLE_URI_MAX},
                    "sha256": {"minProperties": 1},
                },
                "required": ["bundle_uri", "sha256"],
            },
        },
    ]
}


class ModelVersion(Event):
    """A change in a model's lifecycle, on the compacted `affresco.models` topic.

    Two kinds of records, each under its own key so compaction keeps what the registry needs:

    - a version's lifecycle (`registered`, `retired`), keyed `<model>/v<version>`: the latest one
      holds everything about the version (a retired event repeats the bundle, checksums, metrics,
      task and registration time);
    - an alias moving (`deployed`, `rolled_back`), keyed `<model>@<alias>`: `version` is where the
      alias points now, `previous` where it pointed before (most recent first), so a rollback
      needs no older record.
    """

    model_config = ConfigDict(json_schema_extra=_MODEL_VERSION_RULES)

    key_field = "model"
    key_note = (
        "'<model>/v<version>' for a version's lifecycle (registered, retired); '<model>@<alias>' for an "
        "alias moving (deployed, rolled_back). On the compacted topic the latest record of each key is "
        "the state of that version or alias."
    )
    event_type: Literal["model_version"] = "model_version"
    model: str = Name
    version: Version = Field(description="The version registered or retired, or the one the alias points at now.")
    action: ModelAction
    alias: str | None = Field(
        None, pattern=ALIAS_PATTERN, description="The alias moved (required for deployed and rolled_back)."
    )
    previous: list[Version] = Field(
        default_factory=list,
        max_length=MAX_PREVIOUS,
        description="Alias events: the versions the alias pointed at before, most recent first.",
    )
    task: ModelTask | None = None
    bundle_uri: str | None = Field(
        None,
        min_length=1,
        max_length=_BUNDLE_URI_MAX,
        description="Where the bundle is (required for registered and retired).",
    )
    sha256: dict[Annotated[str, Field(min_length=1, max_length=255)], Sha256] = Field(
        default_factory=dict,
        max_length=MAX_FEATURES,
        description="File name -> sha256 (hex) of the bundle (at least one for registered and retired).",
    )
    metrics: dict[Key, float] = Field(default_factory=dict, max_length=MAX_FEATURES)
    registered_at: EpochMs | None = Field(
        None, description="Retired events: when the version was registered, UTC epoch milliseconds."
    )
    reason: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _check_action(self) -> ModelVersion:
        if self.action in _ALIAS_ACTIONS and self.alias is None:
            msg = f"a {self.action} event needs the alias it moves (e.g. 'prod')"
            raise ValueError(msg)
        if self.action in _VERSION_ACTIONS and (self.bundle_uri is None or not self.sha256):
            msg = f"a {self.action} event needs bundle_uri and the sha256 of the bundle's files"
            raise ValueError(msg)
        return self

    def key(self) -> str:
        """`<model>/v<version>` for registered and retired, `<model>@<alias>` for deployed and rolled_back."""
        if self.action in _ALIAS_ACTIONS:
            return f"{self.model}@{self.alias}"
        return f"{self.model}/v{self.version}"


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
    join_key: str | None = Field(
        None, min_length=1, max_length=200, description="Joins the prediction with its outcome (e.g. the trip id)."
    )
    inputs: dict[Key, FeatureValue] = Field(
        default_factory=dict, max_length=MAX_FEATURES, description="The request fields as the model saw them."
    )
    alias: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The alias the request was served under (prod; shadow: the challenger); null: a version.",
    )
    feature_times: dict[Key, Annotated[int, JsonInt(0, INT63_MAX)] | None] = Field(
        default_factory=dict,
        max_length=100,
        description="Per feature (`<group>__<feature>`): the event time of the state it came from (null: none).",
    )


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
    """A monitoring rule fired (`state` firing), or its metric came back (`resolved`)."""

    key_field = "model"
    event_type: Literal["alert"] = "alert"
    model: str = Name
    rule: str = Name
    severity: Literal["info", "warning", "critical"]
    message: str = Field(max_length=2000)
    metric: str | None = OptionalName
    value: float | None = None
    threshold: float | None = None
    state: Literal["firing", "resolved"] = "firing"
    model_version: Version | None = Field(None, description="The version it concerns (null: the whole model).")
    partition: str | None = Field(
        None, min_length=1, max_length=200, description="The partition node it concerns (null: every node)."
    )
    window_start: EpochMs | None = Field(None, description="The window judged, UTC epoch milliseconds.")
    window_end: EpochMs | None = None


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
