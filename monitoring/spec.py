"""A model's monitoring spec (YAML): where its outcomes come from, how long to wait for them, the
metric windows, and the alert rules.

    model: eta
    outcomes:
      topic: rides.trips
      event_type: trip_completed
      join_key: trip_id          # a field of the outcome event, equal to the predictions' join key
      label: eta_s               # a feature-DSL expression over the outcome event: the truth
    horizon: 2h                  # an outcome counts if it comes within this of its prediction
    lateness: 1m                 # how far out of order either input may arrive
    windows: [10m, 1h]           # metrics per tumbling event-time window
    alerts:
      - name: eta_mae_high
        metric: mae
        above: 120               # or `below:`
        window: 10m              # one of `windows`
        min_count: 30            # pairs in the window before the rule judges it
        severity: warning        # info, warning or critical
        scope: partition         # model, version or partition

Every problem is reported at once with file and line (`load_monitor_spec`), before anything runs:
the event type and join key against the event schemas, the label type-checked as a number by the
DSL, durations, metrics and windows named by the rules, the model against the ones known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from processors.definitions.validate import pydantic_problems
from processors.definitions.yaml_loader import item_line, line_of, load_yaml_documents, strip_lines
from processors.dsl import NUMERIC, CompiledExpression, check_expression, compile_expression, schema_from_model
from processors.durations import parse_duration
from processors.exceptions import Problem, ProcessorsError
from streams.events.registry import event_class
from streams.exceptions import UnknownEventTypeError

__all__ = ["METRICS", "AlertRule", "MonitorDefinition", "MonitorSpec", "MonitorSpecError", "load_monitor_spec"]

#: Every metric a window publishes, and the rules may name (per task, and for both).
METRICS = {
    "regression": ("mae", "rmse", "bias", "mape", "r2"),
    "binary": ("auc", "log_loss", "brier", "accuracy", "calibration_error"),
    "any": ("count", "predictions", "missing_feature_rate", "fallback_rate", "latency_p99_ms", "feature_age_p50_ms",
            "prediction_psi", "feature_psi_max"),
}  # fmt: skip
#: Per model input (`psi:distance_km`, `ks:log_km`): drift of each input, named after it.
INPUT_METRIC_PREFIXES = ("psi:", "ks:")


class MonitorSpecError(ProcessorsError):
    """A monitoring spec that cannot work; `problems` says every reason, with file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid monitoring spec:\n" + "\n".join(f"  {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutcomesSpec(_Strict):
    topic: str = Field(min_length=1, max_length=249)
    event_type: str = Field(min_length=1)
    join_key: str = Field(min_length=1)
    label: str = Field(min_length=1, description="A feature-DSL expression over the outcome event: the truth.")


class AlertRule(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    metric: str
    above: float | None = None
    below: float | None = None
    window: str
    min_count: int = Field(30, ge=1)
    severity: Literal["info", "warning", "critical"] = "warning"
    scope: Literal["model", "version", "partition"] = "partition"

    @model_validator(mode="after")
    def _one_threshold(self) -> AlertRule:
        if (self.above is None) == (self.below is None):
            msg = "give exactly one of `above` or `below` (the threshold the metric must not cross)"
            raise ValueError(msg)
        return self

    def breached(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below  # type: ignore[operator]

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]


class MonitorSpec(_Strict):
    model: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    outcomes: OutcomesSpec
    horizon: str = "2h"
    lateness: str = "1m"
    windows: list[str] = Field(default_factory=lambda: ["10m"], min_length=1, max_length=4)
    alerts: list[AlertRule] = Field(default_factory=list)

    @field_validator("horizon", "lateness")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)  # raises ValueError with the reason
        return value

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        lengths = [parse_duration(w) for w in value]
        if len(set(lengths)) != len(lengths):
            msg = f"windows must differ, got {value}"
            raise ValueError(msg)
        return value


@dataclass(frozen=True)
class MonitorDefinition:
    """A checked spec, its durations in ms and its label compiled."""

    spec: MonitorSpec
    file: str
    task: str
    horizon_ms: int
    lateness_ms: int
    windows_ms: tuple[int, ...]
    label: CompiledExpression

    @property
    def model(self) -> str:
        return self.spec.model

    def window_of(self, rule: AlertRule) -> int:
        return parse_duration(rule.window)


def load_monitor_spec(path: Path, tasks: Mapping[str, str]) -> MonitorDefinition:
    """Load and check a spec; `tasks`: each known model's task (regression or binary). Raises
    `MonitorSpecError` listing every problem."""
    docs, problems = load_yaml_documents(path)
    if not problems and len(docs) != 1:
        problems = [Problem(str(path), f"expected one monitoring spec document, got {len(docs)}")]
    if problems:
        raise MonitorSpecError(problems)
    definition, problems = compile_monitor_spec(docs[0], str(path), tasks)
    if definition is None:
        raise MonitorSpecError(problems)
    return definition


def compile_monitor_spec(
    doc: dict[str, Any], file: str, tasks: Mapping[str, str]
) -> tuple[MonitorDefinition | None, list[Problem]]:
    try:
        spec = MonitorSpec.model_validate(strip_lines(doc))
    except ValidationError as exc:
        found = pydantic_problems(exc, {**doc, "group": doc.get("model")}, file)
        return None, [Problem(p.file, p.message, p.line, None, None) for p in found]
    problems: list[Problem] = []
    found_outcomes = doc.get("outcomes")
    outcomes_doc: dict[str, Any] = found_outcomes if isinstance(found_outcomes, dict) else doc

    def problem(message: str, where: dict[str, Any], key: str | None = None, line: int | None = None) -> None:
        problems.append(Problem(file, message, line or line_of(where, key)))

    task = tasks.get(spec.model)
    if task is None:
        known = ", ".join(sorted(tasks)) or "none"
        problem(f"model: no model {spec.model!r} is registered (known: {known})", doc, "model")
    label: CompiledExpression | None = None
    try:
        cls = event_class(spec.outcomes.event_type)
    except UnknownEventTypeError as exc:
        problem(f"outcomes.event_type: {exc}", outcomes_doc, "event_type")
    else:
        schema = schema_from_model(cls)
        if spec.outcomes.join_key not in schema:
            fields = ", ".join(sorted(schema))
            problem(f"outcomes.join_key: {cls.type_name()} has no field {spec.outcomes.join_key!r} (fields: {fields})",
                    outcomes_doc, "join_key")  # fmt: skip
        dsl = check_expression(spec.outcomes.label, schema, expect=NUMERIC)
        for p in dsl:
            problem(f"outcomes.label: {p.message}", outcomes_doc, "label")
        if not dsl:
            label = compile_expression(spec.outcomes.label, schema, expect=NUMERIC)
    windows = {parse_duration(w) for w in spec.windows}
    allowed = set(METRICS["any"]) | set(METRICS.get(task or "", ())) if task else None
    for index, rule in enumerate(spec.alerts):
        line = item_line(doc, "alerts", index)
        if allowed is not None and rule.metric not in allowed and not rule.metric.startswith(INPUT_METRIC_PREFIXES):
            problem(f"alerts[{index}] ({rule.name}): unknown metric {rule.metric!r} for a {task} model "
                    f"(metrics: {', '.join(sorted(allowed))})", doc, line=line)  # fmt: skip
        try:
            length = parse_duration(rule.window)
        except ValueError as exc:
            problem(f"alerts[{index}] ({rule.name}): window: {exc}", doc, line=line)
            continue
        if length not in windows:
            problem(f"alerts[{index}] ({rule.name}): window {rule.window} is not one of the windows {spec.windows}",
                    doc, line=line)  # fmt: skip
    names = [r.name for r in spec.alerts]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problem(f"alerts: the rule name {name!r} is used twice", doc, "alerts")
    if problems or label is None or task is None:
        return None, problems
    return MonitorDefinition(spec, file, task, parse_duration(spec.horizon), parse_duration(spec.lateness),
                             tuple(sorted(windows)), label), []  # fmt: skip
