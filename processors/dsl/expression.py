"""Compile expression text into a `CompiledExpression`, or collect its problems without raising.

>>> from processors.dsl.types import BOOL, FLOAT, STR
>>> schema = {"distance_km": FLOAT, "surge": FLOAT, "status": STR}
>>> fare = compile_expression("distance_km * surge", schema)
>>> fare.evaluate({"distance_km": 2.0, "surge": 1.5}), sorted(fare.fields), str(fare.result_type)
(3.0, ['distance_km', 'surge'], 'float')
>>> [str(p) for p in check_expression("distance_km * surge", schema, expect=BOOL)]
['at column 1: expected a bool result; got float']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.dsl.checker import Checked, check
from processors.dsl.columns import ColumnFn, Columns, compile_columns
from processors.dsl.compiler import RowFn, compile_row
from processors.dsl.exceptions import DslError, DslEvaluationError, DslProblem
from processors.dsl.nodes import Node
from processors.dsl.parser import parse
from processors.dsl.types import ANY, FieldType, Kind, Schema
from processors.numeric import bounded_number

__all__ = ["CompiledExpression", "Expect", "check_expression", "compile_expression"]

Expect = FieldType | Iterable[FieldType] | None
"""The result kinds a caller accepts: one type, several (`NUMERIC`), or None for any."""

# Failures of a row that violates the schema (or of a field typed `any`); documented edge cases return None.
_ROW_ERRORS = (TypeError, ValueError, ArithmeticError, AttributeError)


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """A checked expression, compiled to closures. Evaluation never parses, walks a tree or calls `eval`.

    `evaluate` returns None for null inputs and documented edge cases (division by zero, ...) and
    raises `DslEvaluationError` only for a row whose values violate the schema.
    """

    text: str
    fields: frozenset[str]
    result_type: FieldType
    field_types: Mapping[str, FieldType] = field(repr=False, compare=False)  # of the fields referenced
    row_fn: RowFn = field(repr=False, compare=False)
    column_fn: ColumnFn = field(repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        # closures do not pickle: a worker process recompiles from the text and the referenced fields' types
        return (compile_expression, (self.text, dict(self.field_types)))

    def evaluate(self, row: Mapping[str, Any]) -> Any:
        """The value on one row (a mapping of field name → value; a missing field is None)."""
        try:
            return self.row_fn(row)
        except _ROW_ERRORS as exc:
            raise DslEvaluationError(self.text, exc, row=row) from exc

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Filter semantics: True only when the value is true; None counts as False."""
        return bool(self.evaluate(row))

    def evaluate_many(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The value on each row, in order."""
        fn = self.row_fn
        try:
            return [fn(row) for row in rows]
        except _ROW_ERRORS:
            pass
        for index, row in enumerate(rows):  # find the failing row, to name it
            try:
                fn(row)
            except _ROW_ERRORS as exc:
                raise DslEvaluationError(self.text, exc, index=index, row=row) from exc
        msg = f"internal: {self.text!r} failed on a batch but on none of its rows"  # evaluation is pure
        raise AssertionError(msg)

    def evaluate_columns(self, columns: Columns, n: int) -> list[Any]:
        """The value on each of `n` rows given as columns (field → sequence of n values; missing → None).

        Same result as `evaluate_many` on the equivalent rows, usually several times faster.
        """
        for name in self.fields:
            if name in columns and len(columns[name]) != n:
                got = len(columns[name])
                msg = f"evaluate_columns({self.text!r}): column {name!r} has {got} values; expected n={n}"
                raise ValueError(msg)
        try:
            return self.column_fn(columns, n)
        except _ROW_ERRORS:
            # a bad value, maybe in a branch the row path would not take: the row path decides, and names the row
            names = [name for name in self.fields if name in columns]
            rows = [{name: columns[name][i] for name in names} for i in range(n)]
            return self.evaluate_many(rows)


def check_expression(text: str, schema: Schema | None = None, *, expect: Expect = None) -> list[DslProblem]:
    """Every problem of `text` against `schema` (empty when it compiles); never raises.

    `schema` None: any field name is accepted and typed `any`.
    """
    return _check(text, schema, expect).problems


def compile_expression(text: str, schema: Schema | None = None, *, expect: Expect = None) -> CompiledExpression:
    """Check `text` against `schema` and compile it; raises `DslError` listing every problem.

    `expect` constrains the result's kind (`BOOL` for filters, `NUMERIC` for aggregated values);
    a nullable result is accepted (a None filter result counts as False), and so is an int result
    where a float is expected.
    """
    outcome = _check(text, schema, expect)
    if outcome.problems or outcome.node is None or outcome.checked is None:
        raise DslError(text, outcome.problems)
    types = outcome.checked.types
    fields = frozenset(outcome.checked.fields)
    row_fn, column_fn = compile_row(outcome.node, types), compile_columns(outcome.node, types)
    if outcome.checked.result.kind in _NUMERIC_RESULTS:
        row_fn, column_fn = _bounded_row(row_fn), _bounded_columns(column_fn)
    return CompiledExpression(
        text=text,
        fields=fields,
        result_type=outcome.checked.result,
        field_types={name: schema[name] if schema is not None else ANY for name in sorted(fields)},
        row_fn=row_fn,
        column_fn=column_fn,
    )


# Results that may be numbers: the rule of processors/numeric.py applies (non-finite or beyond
# ±2**53 is null), so an overflow such as `eta_s / distance_km` = inf is null like `x / 0`.
_NUMERIC_RESULTS = frozenset({Kind.INT, Kind.FLOAT, Kind.ANY})


def _bounded_row(fn: RowFn) -> RowFn:
    def run(row: Mapping[str, Any]) -> Any:
        return bounded_number(fn(row))

    return run


def _bounded_columns(fn: ColumnFn) -> ColumnFn:
    def run(columns: Columns, n: int) -> list[Any]:
        return list(map(bounded_number, fn(columns, n)))

    return run


@dataclass(frozen=True, slots=True)
class _Outcome:
    node: Node | None
    checked: Checked | None
    problems: list[DslProblem]


def _check(text: str, schema: Schema | None, expect: Expect) -> _Outcome:
    parsed = parse(text)
    if parsed.node is None:
        return _Outcome(None, None, parsed.problems)
    checked = check(parsed.node, text, schema)
    problems = sorted([*parsed.problems, *checked.problems], key=lambda p: (p.line, p.column))
    if not problems and expect is not None:
        message = _expect_problem(checked.result, expect)
        if message:
            problems.append(DslProblem(text, message, parsed.node.column, parsed.node.line))
    return _Outcome(parsed.node, checked, problems)


def _expect_problem(result: FieldType, expect: FieldType | Iterable[FieldType]) -> str | None:
    kinds = {expect.kind} if isinstance(expect, FieldType) else {t.kind for t in expect}
    wanted = " or ".join(sorted(k.value for k in kinds))
    if Kind.FLOAT in kinds:
        kinds.add(Kind.INT)  # an int is a valid float
    if result.kind is Kind.ANY or result.kind in kinds:
        return None
    if result.kind is Kind.NULL:
        return f"expected a {wanted} result; got None: the expression is always None"
    return f"expected a {wanted} result; got {result.kind.value}"
