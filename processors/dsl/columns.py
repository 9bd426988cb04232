"""Compile a checked tree into closures evaluating whole columns at once (lists in, list out).

Same semantics as the row closures of `compiler.py`, element by element, with list comprehensions
instead of one closure call per node and row. Unlike the row path, both branches of a conditional
(and every operand of `and`/`or`/`coalesce`) are evaluated for every row; since evaluation has no
side effects this is invisible, except that a row violating the schema may raise in a branch the row
path would skip — `CompiledExpression.evaluate_columns` then re-runs the rows one by one.

    >>> from processors.dsl.checker import check
    >>> from processors.dsl.parser import parse
    >>> text = "distance_km * surge"
    >>> node = parse(text).node
    >>> fn = compile_columns(node, check(node, text, None).types)
    >>> fn({"distance_km": [2.0, 1.0], "surge": [1.5, None]}, 2)
    [3.0, None]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from processors.dsl.compiler import bound_call, needs_float
from processors.dsl.functions import FUNCTIONS
from processors.dsl.nodes import Call, Compare, Conditional, Const, Field, InList, Logical, Node, Operation
from processors.dsl.operators import COMPARISONS, arithmetic
from processors.dsl.types import FieldType, Kind

__all__ = ["ColumnFn", "Columns", "compile_columns"]

Columns = Mapping[str, Sequence[Any]]
ColumnFn = Callable[[Columns, int], list[Any]]


def compile_columns(node: Node, types: Mapping[int, FieldType]) -> ColumnFn:
    """The closure evaluating `node` over `n` rows given as columns (a missing column is all None)."""
    fn = _compile(node, types)
    if needs_float(node, types):
        return lambda columns, n: [v if v is None else float(v) for v in fn(columns, n)]
    return fn


def _compile(node: Node, types: Mapping[int, FieldType]) -> ColumnFn:
    def sub(child: Node) -> ColumnFn:
        return compile_columns(child, types)

    match node:
        case Const(value=value):
            return lambda columns, n: [value] * n
        case Field(name=name):
            return lambda columns, n: list(columns[name]) if name in columns else [None] * n
        case Operation(op="not", operands=(operand,)):
            return _map1(sub(operand), lambda v: not v)
        case Operation(op="-", operands=(operand,)):
            return _map1(sub(operand), lambda v: -v)
        case Operation(op="+", operands=(operand,)):
            return sub(operand)
        case Operation(op=op, operands=(left, right)):
            checked = Kind.ANY in (types[id(left)].kind, types[id(right)].kind)
            return _binary(arithmetic(op, checked=checked), left, right, sub)
        case Compare(op=op, left=left, right=right):
            return _binary(COMPARISONS[op], left, right, sub)
        case Logical(op=op, operands=operands):
            return _fold(_and2 if op == "and" else _or2, [sub(o) for o in operands])
        case InList(operand=operand, values=values, negate=negate):
            members = frozenset(values)
            return _map1(sub(operand), lambda v: (v in members) is not negate)
        case Conditional(cond=cond, then=then, otherwise=otherwise):
            return _conditional(sub(cond), sub(then), sub(otherwise))
        case Call():
            return _call(node, sub)
    msg = f"internal: cannot compile a {type(node).__name__} node; the checker should have refused it"
    raise TypeError(msg)


def _map1(operand: ColumnFn, fn: Callable[[Any], Any]) -> ColumnFn:
    return lambda columns, n: [None if v is None else fn(v) for v in operand(columns, n)]


def _binary(op: Callable[[Any, Any], Any], left: Node, right: Node, sub: Callable[[Node], ColumnFn]) -> ColumnFn:
    if isinstance(right, Const) and right.value is not None:
        constant, left_fn = right.value, sub(left)
        return lambda columns, n: [None if a is None else op(a, constant) for a in left_fn(columns, n)]
    if isinstance(left, Const) and left.value is not None:
        constant, right_fn = left.value, sub(right)
        return lambda columns, n: [None if b is None else op(constant, b) for b in right_fn(columns, n)]
    left_fn, right_fn = sub(left), sub(right)

    def run(columns: Columns, n: int) -> list[Any]:
        pairs = zip(left_fn(columns, n), right_fn(columns, n), strict=True)
        return [None if a is None or b is None else op(a, b) for a, b in pairs]

    return run


def _and2(a: list[Any], b: list[Any]) -> list[Any]:
    return [
        False if (x is not None and not x) or (y is not None and not y) else None if x is None or y is None else True
        for x, y in zip(a, b, strict=True)
    ]


def _or2(a: list[Any], b: list[Any]) -> list[Any]:
    return [
        True if (x is not None and x) or (y is not None and y) else None if x is None or y is None else False
        for x, y in zip(a, b, strict=True)
    ]


def _fold(pair: Callable[[list[Any], list[Any]], list[Any]], operands: list[ColumnFn]) -> ColumnFn:
    """Three-valued `and`/`or` are associative: combine the operands pairwise, left to right."""

    def run(columns: Columns, n: int) -> list[Any]:
        result = operands[0](columns, n)
        for operand in operands[1:]:
            result = pair(result, operand(columns, n))
        return result

    return run


def _conditional(cond: ColumnFn, then: ColumnFn, otherwise: ColumnFn) -> ColumnFn:
    def run(columns: Columns, n: int) -> list[Any]:
        triples = zip(cond(columns, n), then(columns, n), otherwise(columns, n), strict=True)
        return [t if c else o for c, t, o in triples]

    return run


def _call(node: Call, sub: Callable[[Node], ColumnFn]) -> ColumnFn:
    if node.name == "if_else":
        return _conditional(*(sub(arg) for arg in node.args))
    if node.name == "coalesce":
        return _fold(
            lambda a, b: [x if x is not None else y for x, y in zip(a, b, strict=True)], [sub(arg) for arg in node.args]
        )
    if node.name == "is_null":
        operand = sub(node.args[0])
        return lambda columns, n: [v is None for v in operand(columns, n)]
    impl = FUNCTIONS[node.name].impl
    if impl is None:
        msg = f"internal: function {node.name!r} has no columnar rule"
        raise TypeError(msg)
    bound = bound_call(node)
    if bound is not None:
        first, rest = sub(bound[0]), bound[1]
        if not rest:
            return _map1(first, impl)
        return lambda columns, n: [None if v is None else impl(v, *rest) for v in first(columns, n)]
    args = [sub(arg) for arg in node.args]

    def run(columns: Columns, n: int) -> list[Any]:
        rows = zip(*(arg(columns, n) for arg in args), strict=True)
        return [None if None in values else impl(*values) for values in rows]

    return run
