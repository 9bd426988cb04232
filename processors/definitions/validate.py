"""Turning YAML into compiled feature groups, reporting every problem at once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from processors.definitions.group import Feature, FeatureGroup
from processors.definitions.spec import FeatureGroupSpec
from processors.definitions.yaml_loader import LINE_KEY, line_of, load_yaml_documents, strip_lines
from processors.dsl import BOOL, check_expression, compile_expression, schema_from_model
from processors.durations import format_duration, parse_duration
from processors.exceptions import DefinitionError, Problem
from processors.kernels import Agg, WindowSpec
from streams.events.base import Event
from streams.events.registry import event_class
from streams.exceptions import UnknownEventTypeError

__all__ = ["compile_spec", "load_groups", "pydantic_problems", "yaml_files"]

#: The columns the offline history has beside the features (state.offline.MIRROR_COLUMNS).
RESERVED_COLUMNS = frozenset({"entity_key", "event_time", "revision", "written_by"})


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """The `.yaml`/`.yml` files named, or found (recursively) in the directories named."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    return files


def load_groups(paths: Sequence[Path]) -> list[FeatureGroup]:
    """Load and validate every feature group under `paths`; raise `DefinitionError` listing all problems."""
    problems: list[Problem] = []
    groups: list[FeatureGroup] = []
    files = yaml_files(paths)
    if not files:
        names = ", ".join(str(p) for p in paths)
        raise DefinitionError([Problem(names, "no .yaml or .yml files found")])
    seen: dict[tuple[str, int], str] = {}
    for file in files:
        docs, file_problems = load_yaml_documents(file)
        problems += file_problems
        for doc in docs:
            group, doc_problems = compile_spec(doc, str(file))
            problems += doc_problems
            if group is None:
                continue
            where = f"{file}:{doc.get(LINE_KEY, 1)}"
            previous = seen.get((group.name, group.version))
            if previous is not None:
                problems.append(
                    Problem(str(file), f"defined twice (also at {previous})", doc.get(LINE_KEY), group.name)
                )
            seen[(group.name, group.version)] = where
            groups.append(group)
    if problems:
        raise DefinitionError(problems)
    return groups


def pydantic_problems(exc: ValidationError, doc: dict[str, Any], file: str) -> list[Problem]:
    group = doc.get("group") if isinstance(doc.get("group"), str) else None
    out = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        # The innermost mapping the error is in, and the key inside it, give the line.
        container: dict[str, Any] = doc
        node: Any = doc
        key: str | None = None
        for part in loc:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                break
            if isinstance(node, dict):
                container, key = node, None
            elif isinstance(part, str):
                key = part
        line = line_of(container, key)
        feature = None
        if len(loc) >= 2 and loc[0] == "features" and isinstance(loc[1], int):
            features = doc.get("features") or []
            if loc[1] < len(features) and isinstance(features[loc[1]], dict):
                feature = features[loc[1]].get("name")
        field = ".".join(str(p) for p in loc) or "(document)"
        got = err.get("input")
        detail = "" if err["type"] == "missing" or isinstance(got, dict) else f", got {strip_lines(got)!r}"
        message = err["msg"].removeprefix("Value error, ")
        out.append(Problem(file, f"{field}: {message}{detail}", line, group, feature))
    return out


def compile_spec(doc: dict[str, Any], file: str) -> tuple[FeatureGroup | None, list[Problem]]:
    """One YAML document → a compiled group, or None and every problem found.

    Shape problems (pydantic) and semantic problems (event type, expressions, windows) are both
    collected, so one run shows everything wrong with a file.
    """
    problems: list[Problem] = []
    spec: FeatureGroupSpec | None = None
    try:
        spec = FeatureGroupSpec.model_validate(strip_lines(doc))
    except ValidationError as exc:
        problems += pydantic_problems(exc, doc, file)
    checked = _Semantics(doc, file)
    problems += checked.problems
    if problems or spec is None:
        return None, problems
    return _build(spec, checked, file), []


class _Semantics:
    """Checks on the raw document that pydantic cannot do: event type, DSL, durations."""

    def __init__(self, doc: dict[str, Any], file: str) -> None:
        self.doc, self.file = doc, file
        self.problems: list[Problem] = []
        self.group = doc.get("group") if isinstance(doc.get("group"), str) else None
        self.durations: dict[str, int] = {}
        self.cls: type[Event] | None = None
        self.schema: Any = None
        self._run()

    def problem(self, message: str, item: dict[str, Any] | None = None, key: str | None = None) -> None:
        line = line_of(item if item is not None else self.doc, key) or line_of(self.doc)
        feature = item.get("name") if item is not None and isinstance(item.get("name"), str) else None
        self.problems.append(Problem(self.file, message, line, self.group, feature))

    def check(
        self, text: Any, where: str, item: dict[str, Any] | None = None, expect: Any = None, *, key: str | None = None
    ) -> bool:
        if not isinstance(text, str) or self.schema is None:
            return False
        found = check_expression(text, self.schema, expect=expect)
        for p in found:
            self.problem(f"{where} {text!r}: {p}", item, key or where.rsplit(".", 1)[-1])
        return not found

    def _run(self) -> None:
        doc = self.doc
        raw_source = doc.get("source")
        source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
        etype = source.get("event_type")
        if isinstance(etype, str):
            try:
                self.cls = event_class(etype)
                self.schema = schema_from_model(self.cls)
            except UnknownEventTypeError as exc:
                self.problem(f"source.event_type: {exc}", source or None, "event_type")
        time_field = doc.get("event_time", "event_time")
        if self.schema is not None and isinstance(time_field, str) and time_field not in self.schema:
            self.problem(f"event_time: {etype} has no field {time_field!r}", key="event_time")
        defaults = {"ttl": "7d", "freshness": "1m", "allowed_lateness": "5m"}
        for name, default in defaults.items():
            try:
                self.durations[name] = parse_duration(doc.get(name, default))
            except (ValueError, TypeError) as exc:
                self.problem(f"{name}: {exc}", key=name)
        self.check(doc.get("key"), "key")
        if source.get("filter") is not None:
            self.check(source.get("filter"), "source.filter", source, expect=BOOL, key="filter")
        seen: set[str] = set()
        for item in doc.get("features") or []:
            if isinstance(item, dict):
                self._feature(item, seen)

    def _feature(self, item: dict[str, Any], seen: set[str]) -> None:
        name = item.get("name")
        if isinstance(name, str):
            if name in seen:
                self.problem("feature name used twice in this group", item)
            if name in RESERVED_COLUMNS:
                self.problem(
                    f"feature name {name!r} is a column of every row of the group's history; "
                    f"expected a name other than {', '.join(sorted(RESERVED_COLUMNS))}",
                    item,
                )
            seen.add(name)
        agg = item.get("agg")
        expr = item.get("expr")
        if (
            isinstance(expr, str)
            and self.check(expr, "expr", item, key="expr")
            and agg in {a.value for a in Agg if a.numeric}
        ):
            result = compile_expression(expr, self.schema).result_type
            if not (result.kind.is_numeric or result.kind.value == "any"):
                self.problem(f"{agg} needs a numeric expr; {expr!r} is {result}", item)
        window = item.get("window")
        if window is None:
            return
        try:
            window_ms = parse_duration(window)
        except (ValueError, TypeError) as exc:
            self.problem(f"window: {exc}", item, "window")
            return
        hop = WindowSpec.of(Agg.count, window_ms).hop_ms
        if window_ms % hop:
            self.problem(f"window {window} is not a multiple of its tile size {format_duration(hop)}", item, "window")


def _build(spec: FeatureGroupSpec, checked: _Semantics, file: str) -> FeatureGroup:
    assert checked.cls is not None and checked.schema is not None  # no problems means both resolved
    schema = checked.schema
    features = tuple(
        Feature(
            name=f.name,
            agg=f.agg,
            window=WindowSpec.of(f.agg, parse_duration(f.window)) if f.agg is not None and f.window else None,
            expr=compile_expression(f.expr, schema) if f.expr is not None else None,
        )
        for f in spec.features
    )
    return FeatureGroup(
        spec=spec,
        event_class=checked.cls,
        key=compile_expression(spec.key, schema),
        filter=compile_expression(spec.source.filter, schema, expect=BOOL) if spec.source.filter else None,
        features=features,
        ttl_ms=checked.durations["ttl"],
        freshness_ms=checked.durations["freshness"],
        lateness_ms=checked.durations["allowed_lateness"],
        source_file=file,
    )
