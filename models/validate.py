"""Model spec YAML → a checked `ModelDefinition`, reporting every problem at once (file and line).

Checked before anything runs: the shape (pydantic); every `group:feature` against the feature
groups; the training set's columns (from the label event type, or the Parquet schema) for the
label, time field, entity, partition and request columns; every transform type-checked with the
feature DSL against the request fields and stored features; the trainer and its parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from models.inputs import ModelInput, ModelInputs, StoredFeature, feature_type, stored_column
from models.spec import ModelSpec, TransformSpec
from models.trainers import trainer_problems
from processors.definitions import FeatureGroup
from processors.definitions.validate import pydantic_problems
from processors.definitions.yaml_loader import item_line, line_of, load_yaml_documents, strip_lines
from processors.dsl import BOOL, FLOAT, INT, STR, FieldType, Kind, check_expression, schema_from_model
from processors.exceptions import Problem
from streams.events.registry import event_class
from streams.exceptions import UnknownEventTypeError

__all__ = ["ModelDefinition", "compile_model_spec", "load_model_spec", "referenced_groups"]

_KINDS = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL}
_METRICS = {"regression": ("rmse", "mae", "mape"), "binary": ("log_loss", "brier", "auc", "accuracy")}

LabelSchema = Mapping[str, FieldType]
"""The columns of the label rows (or of a persisted training set) and their types."""


class ModelDefinition:
    """A checked spec: the model's inputs in order, the groups they come from, the training-set plan."""

    def __init__(
        self,
        spec: ModelSpec,
        file: str,
        inputs: ModelInputs,
        groups: Mapping[str, FeatureGroup],
        entities: dict[str, str],
    ) -> None:
        self.spec, self.file, self.inputs, self.groups, self.entities = spec, file, inputs, dict(groups), entities

    @property
    def name(self) -> str:
        return self.spec.model

    @property
    def partition_columns(self) -> list[str]:
        return list(self.spec.partitions.by)

    @property
    def fallback_metric(self) -> str:
        return self.spec.partitions.metric or ("rmse" if self.spec.task == "regression" else "log_loss")


def referenced_groups(doc: Mapping[str, Any]) -> list[str]:
    """The group names a raw spec document refers to (to resolve them before validating)."""
    names: list[str] = []
    features = doc.get("features")
    for item in features if isinstance(features, list) else []:
        if isinstance(item, str) and ":" in item:
            group = item.split(":", 1)[0]
            if group not in names:
                names.append(group)
    return names


def load_model_spec(
    path: Path, groups: Mapping[str, FeatureGroup], label_schema: Callable[[ModelSpec], LabelSchema | str]
) -> ModelDefinition:
    """Load and check one spec file; raise `SpecError` listing every problem."""
    from models.exceptions import SpecError

    docs, problems = load_yaml_documents(path)
    if not problems and len(docs) != 1:
        problems = [Problem(str(path), f"expected one model spec document, got {len(docs)}")]
    if problems:
        raise SpecError(problems)
    definition, problems = compile_model_spec(docs[0], str(path), groups, label_schema)
    if definition is None:
        raise SpecError(problems)
    return definition


def compile_model_spec(
    doc: dict[str, Any],
    file: str,
    groups: Mapping[str, FeatureGroup],
    label_schema: Callable[[ModelSpec], LabelSchema | str],
) -> tuple[ModelDefinition | None, list[Problem]]:
    """One YAML document → a definition, or None and every problem found.

    `label_schema(spec)` gives the label rows' columns (or a message when they cannot be known, e.g.
    an unreadable Parquet file); it is asked only when the shape is valid.
    """
    try:
        spec = ModelSpec.model_validate(strip_lines(doc))
    except ValidationError as exc:
        # Field names in the messages, as for feature groups; the spec's name stands where a group's would.
        found = pydantic_problems(exc, {**doc, "group": doc.get("model")}, file)
        return None, [Problem(p.file, p.message, p.line, None, p.feature) for p in found]
    checker = _Semantics(doc, file, spec, groups)
    schema = label_schema(spec)
    if isinstance(schema, str):
        checker.problem(f"training_set: {schema}", "training_set")
        return None, checker.problems
    definition = checker.run(schema)
    return (None, checker.problems) if checker.problems else (definition, [])


class _Semantics:
    def __init__(self, doc: dict[str, Any], file: str, spec: ModelSpec, groups: Mapping[str, FeatureGroup]) -> None:
        self.doc, self.file, self.spec, self.groups = doc, file, spec, groups
        self.problems: list[Problem] = []

    def problem(self, message: str, key: str) -> None:
        """A problem of a top-level key (`label`, `features`…), at its line."""
        self.problems.append(Problem(self.file, message, line_of(self.doc, key) or line_of(self.doc)))

    def feature_problem(self, index: int, message: str, key: str | None = None) -> None:
        """A problem of `features[index]`: at its `key` when it is a mapping, else at the item's line."""
        items = self.doc.get("features") or []
        raw = items[index] if index < len(items) else None
        line = line_of(raw, key) if isinstance(raw, dict) else item_line(self.doc, "features", index)
        self.problems.append(Problem(self.file, message, line or line_of(self.doc, "features")))

    def _section_problem(self, section: str, key: str, message: str) -> None:
        raw = self.doc.get(section)
        line = line_of(raw, key) if isinstance(raw, dict) else None
        self.problems.append(Problem(self.file, f"{section}.{key}: {message}", line or line_of(self.doc, section)))

    def run(self, columns: LabelSchema) -> ModelDefinition | None:
        spec = self.spec
        ts = spec.training_set
        where = ts.path or ts.labels or ""
        time_type = columns.get(ts.time_field)
        if time_type is None:
            self._section_problem(
                "training_set", "time_field", f"the label rows ({where}) have no column {ts.time_field!r}"
            )
        elif time_type.kind is not Kind.INT:
            self._section_problem("training_set", "time_field", f"{ts.time_field!r} must be epoch ms, is {time_type}")
        label = columns.get(spec.label)
        if label is None:
            self.problem(
                f"label: the label rows ({where}) have no column {spec.label!r} ({_listing(columns)})", "label"
            )
        elif not (label.kind.is_numeric or (spec.task == "binary" and label.kind is Kind.BOOL)):
            self.problem(f"label: {spec.label!r} must be numeric for a {spec.task} model, is {label}", "label")
        request: dict[str, FieldType] = {}
        for name, kind in spec.request.items():
            wanted = _KINDS[kind]
            got = columns.get(name)
            if got is None:
                self._section_problem("request", name, f"the label rows ({where}) have no column {name!r}")
            elif got.kind is not wanted.kind and not (wanted.kind is Kind.FLOAT and got.kind is Kind.INT):
                self._section_problem("request", name, f"declared {kind}, but the label rows hold {got}")
            request[name] = wanted.with_nullable(True)
        for name in spec.partitions.by:
            got = columns.get(name)
            if got is None:
                self._section_problem(
                    "partitions", "by", f"partition column {name!r} is not in the label rows ({where})"
                )
            elif got.kind not in (Kind.STR, Kind.INT, Kind.BOOL):
                self._section_problem("partitions", "by", f"partition column {name!r} must be a category, is {got}")
            request.setdefault(name, STR.with_nullable(True))
        if spec.partitions.metric is not None and spec.partitions.metric not in _METRICS[spec.task]:
            known = ", ".join(_METRICS[spec.task])
            self._section_problem("partitions", "metric", f"expected one of {known}, got {spec.partitions.metric!r}")
        for key, message in trainer_problems(spec.trainer.library, spec.task, spec.trainer.params, spec.trainer.search):
            self._section_problem("trainer", key, message)
        if spec.label in spec.request:
            self._section_problem("request", spec.label, f"{spec.label!r} is the label: a model cannot be given it")
        stored, entities = self._stored(columns, request)
        inputs = self._inputs(request, stored)
        if self.problems:
            return None
        used = {s.group: self.groups[s.group] for s in stored.values()}
        return ModelDefinition(
            spec, self.file, ModelInputs(tuple(inputs), request, tuple(stored.values())), used, entities
        )

    def _stored(
        self, columns: LabelSchema, request: dict[str, FieldType]
    ) -> tuple[dict[str, StoredFeature], dict[str, str]]:
        stored: dict[str, StoredFeature] = {}
        entities: dict[str, str] = {}
        ts = self.spec.training_set
        for index, item in enumerate(self.spec.features):
            if not isinstance(item, str) or ":" not in item:
                continue
            group_name, _, feature_name = item.partition(":")
            group = self.groups.get(group_name)
            if group is None:
                known = ", ".join(sorted(self.groups)) or "none registered"
                message = f"features[{index}] {item!r}: unknown feature group {group_name!r} (known: {known})"
                self.feature_problem(index, message)
                continue
            feature = next((f for f in group.features if f.name == feature_name), None)
            if feature is None:
                self.feature_problem(
                    index,
                    f"features[{index}] {item!r}: {group.ref} has no feature {feature_name!r} "
                    f"(features: {', '.join(group.feature_names)})",
                )
                continue
            column = ts.entities.get(group_name) or next(iter(sorted(group.key.fields)), "")
            if group_name not in entities:
                if column not in columns:
                    self._section_problem(
                        "training_set", "entities",
                        f"{group.ref} is keyed by {column!r}, which the label rows do not have; "
                        f"map it with entities: {{{group_name}: <column>}}",
                    )  # fmt: skip
                entities[group_name] = column
                request.setdefault(column, STR.with_nullable(True))
            name = stored_column(group_name, feature_name)
            stored[name] = StoredFeature(name, group_name, group.version, feature_name, feature_type(group, feature))
            if ts.path is not None:
                got, wanted = columns.get(name), stored[name].type
                if got is None:
                    self._section_problem(
                        "training_set", "path", f"the training set has no column {name!r} for {item!r}"
                    )
                elif got.kind is not wanted.kind and not (got.kind.is_numeric and wanted.kind.is_numeric):
                    message = f"column {name!r} holds {got.kind.value}, but {item!r} is {wanted.kind.value}"
                    self._section_problem("training_set", "path", message)
        for group_name in ts.entities:
            if group_name not in entities:
                self._section_problem("training_set", "entities", f"{group_name!r} is not used by any feature")
        return stored, entities

    def _inputs(self, request: dict[str, FieldType], stored: dict[str, StoredFeature]) -> list[ModelInput]:
        schema: dict[str, FieldType] = {**request, **{name: s.type for name, s in stored.items()}}
        inputs: list[ModelInput] = []
        seen: set[str] = set()
        for index, item in enumerate(self.spec.features):
            if isinstance(item, TransformSpec):
                name, text = item.name, item.expr
                found = check_expression(text, schema)
                for p in found:
                    self.feature_problem(index, f"features[{index}] {name!r}: expr {text!r}: {p}", "expr")
                if found:
                    continue
                from processors.dsl import compile_expression

                result = compile_expression(text, schema).result_type
                model_input = ModelInput(name, "transform", text, result)
            elif ":" in item:
                name = stored_column(*item.split(":", 1))
                if name not in stored:
                    continue  # reported by _stored
                model_input = ModelInput(name, "stored", item, stored[name].type)
            else:
                name = item
                if item not in request:
                    declared = ", ".join(sorted(self.spec.request)) or "none"
                    self.feature_problem(
                        index,
                        f"features[{index}] {item!r}: not a group:feature reference nor a request field "
                        f"(request fields: {declared})",
                    )
                    continue
                model_input = ModelInput(name, "request", item, request[item])
            if name in seen:
                self.feature_problem(index, f"features[{index}]: input {name!r} is listed twice", "name")
            seen.add(name)
            kind = model_input.type.kind
            if not (kind.is_numeric or kind in (Kind.BOOL, Kind.ANY, Kind.NULL)):
                self.feature_problem(
                    index,
                    f"features[{index}] {name!r} is {model_input.type}; a model input must be a number or a bool "
                    "(use a category as a partition column, or transform it, e.g. if_else(x == 'a', 1, 0))",
                    "expr",
                )
            inputs.append(model_input)
        if not inputs and not self.problems:
            self.problem("features: the model has no inputs", "features")
        return inputs


def _listing(columns: LabelSchema) -> str:
    return "columns: " + ", ".join(sorted(columns))


def label_schema_of(spec: ModelSpec) -> LabelSchema | str:
    """The label rows' columns: from the label event type (topic labels) or the Parquet file's schema."""
    ts = spec.training_set
    source = ts.path or ts.labels
    assert source is not None  # the spec's validator demands one of them
    if source.endswith(".parquet") or ts.path is not None:
        return parquet_schema(source)
    try:
        return schema_from_model(event_class(ts.label_type))
    except UnknownEventTypeError as exc:
        return f"label_type: {exc}"


def parquet_schema(path: str) -> LabelSchema | str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        return f"cannot read the Parquet schema of {path}: {exc}"
    out: dict[str, FieldType] = {}
    for field in schema:
        t = field.type
        if pa.types.is_boolean(t):
            kind = Kind.BOOL
        elif pa.types.is_integer(t) or pa.types.is_timestamp(t):
            kind = Kind.INT
        elif pa.types.is_floating(t):
            kind = Kind.FLOAT
        elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
            kind = Kind.STR
        else:
            kind = Kind.ANY
        out[field.name] = FieldType(kind, nullable=True)
    return out
