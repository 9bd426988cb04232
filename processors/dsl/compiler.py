"""Compile a checked tree into nested Python closures evaluating one row (a mapping of field values).

Each node becomes one closure built once, at compile time; evaluating a row only calls closures —
no tree walking, no `eval`. The common shapes are specialized: a bare field is `row.get(name)`,
`field op literal` and `field op field` read the row directly instead of calling child closures.

    >>> from processors.dsl.checker import check
    >>> from processors.dsl.parser import parse
    >>> text = "distance_km * surge"
    >>> node = parse(text).node
    >>> fn = compile_row(node, check(node, text, None).types)
    >>> fn({"distance_km": 2.0, "surge": 1.5}), fn({"distance_km": 2.0, "surge": None})
    (3.0, None)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from processors.dsl.functions import FUNCTIONS, Nulls
from processors.dsl.nodes import Call, Compare, Conditional, Const, Field, InList, Logical, Node, Operation
from processors.dsl.operators import COMPARISONS, arithmetic
from processors.dsl.types import FieldType, Kind

__all__ = ["RowFn", "bound_call", "compile_row", "needs_float"]

Row = Mapping[str, Any]
RowFn = Callable[[Row], Any]


def compile_row(node: Node, types: Mapping[int, FieldType]) -> RowFn:
    """The closure evaluating `node` on a row; `types` are the checker's node types (by `id`)."""
    fn = _compile(node, types)
    if needs_float(node, types):
        return _as_float(fn)
    return fn


def needs_float(node: Node, types: Mapping[int, FieldType]) -> bool:
    """Whether a float-typed node may pass an int through (a branch, a `coalesce`/`least` argument): convert it."""
    if types[id(node)].kind is not Kind.FLOAT:
        return False
    if isinstance(node, Conditional):
        passed: tuple[Node, ...] = (node.then, node.otherwise)
    elif isinstance(node, Call) and node.name == "if_else":
        passed = node.args[1:]
    elif isinstance(node, Call) and node.name in ("coalesce", "least", "greatest", "clip"):
        passed = node.args
    else:
        return False
    return any(types[id(child)].kind is Kind.INT for child in passed)


def bound_call(node: Call) -> tuple[Node, tuple[Any, ...]] | None:
    """`(first argument, literal rest)` when every argument after the first is a non-None literal: bind them once."""
    rest = node.args[1:]
    if node.args and all(isinstance(a, Const) and a.value is not None for a in rest):
        return node.args[0], tuple(a.value for a in rest if isinstance(a, Const))
    return None


def _as_float(fn: RowFn) -> RowFn:
    def run(row: Row) -> Any:
        value = fn(row)
        return value if value is None else float(value)

    return run


def _compile(node: Node, types: Mapping[int, FieldType]) -> RowFn:
    def sub(child: Node) -> RowFn:
        return compile_row(child, types)

    match node:
        case Const(value=value):
            return lambda row: value
        case Field(name=name):
            return lambda row: row.get(name)
        case Operation(op="not", operands=(operand,)):
            return _not(sub(operand))
        case Operation(op="-", operands=(operand,)):
            return _negate(sub(operand))
        case Operation(op="+", operands=(operand,)):
            return sub(operand)
        case Operation(op=op, operands=(left, right)):
            checked = Kind.ANY in (types[id(left)].kind, types[id(right)].kind)
            return _binary(arithmetic(op, checked=checked), left, right, sub)
        case Compare(op=op, left=left, right=right):
            return _binary(COMPARISONS[op], left, right, sub)
        case Logical(op="and", operands=operands):
            return _and([sub(o) for o in operands])
        case Logical(op="or", operands=operands):
            return _or([sub(o) for o in operands])
        case InList(operand=operand, values=values, negate=negate):
            return _in(sub(operand), frozenset(values), negate)
        case Conditional(cond=cond, then=then, otherwise=otherwise):
            return _conditional(sub(cond), sub(then), sub(otherwise))
        case Call():
            return _call(node, sub)
    msg = f"internal: cannot compile a {type(node).__name__} node; the checker should have refused it"
    raise TypeError(msg)


def _not(operand: RowFn) -> RowFn:
    def run(row: Row) -> Any:
        value = operand(row)
        return None if value is None else not value

    return run


def _negate(operand: RowFn) -> RowFn:
    def run(row: Row) -> Any:
        value = operand(row)
        return None if value is None else -value

    return run


def _binary(op: Callable[[Any, Any], Any], left: Node, right: Node, sub: Callable[[Node], RowFn]) -> RowFn:
    """`op(a, b)` or None if either is None; both operands are always evaluated (as the columnar path does)."""
    if isinstance(left, Field) and isinstance(right, Const) and right.value is not None:
        name, constant = left.name, right.value

        def field_const(row: Row) -> Any:
            a = row.get(name)
            return None if a is None else op(a, constant)

        return field_const
    if isinstance(left, Const) and left.value is not None and isinstance(right, Field):
        constant, name = left.value, right.name

        def const_field(row: Row) -> Any:
            b = row.get(name)
            return None if b is None else op(constant, b)

        return const_field
    if isinstance(left, Field) and isinstance(right, Field):
        first, second = left.name, right.name

        def field_field(row: Row) -> Any:
            a = row.get(first)
            b = row.get(second)
            return None if a is None or b is None else op(a, b)

        return field_field
    left_fn, right_fn = sub(left), sub(right)

    def general(row: Row) -> Any:
        a = left_fn(row)
        b = right_fn(row)
        return None if a is None or b is None else op(a, b)

    return general


def _and(operands: list[RowFn]) -> RowFn:
    """Three-valued: False if any operand is False (later ones are not evaluated), else None if any is None."""
    if len(operands) == 2:
        first, second = operands

        def and2(row: Row) -> Any:
            a = first(row)
            if a is not None and not a:
                return False
            b = second(row)
            if b is None:
                return None
            if not b:
                return False
            return None if a is None else True

        return and2

    def run(row: Row) -> Any:
        unknown = False
        for operand in operands:
            value = operand(row)
            if value is None:
                unknown = True
            elif not value:
                return False
        return None if unknown else True

    return run


def _or(operands: list[RowFn]) -> RowFn:
    """Three-valued: True if any operand is True (later ones are not evaluated), else None if any is None."""
    if len(operands) == 2:
        first, second = operands

        def or2(row: Row) -> Any:
            a = first(row)
            if a:
                return True
            b = second(row)
            if b is None:
                return None
            if b:
                return True
            return None if a is None else False

        return or2

    def run(row: Row) -> Any:
        unknown = False
        for operand in operands:
            value = operand(row)
            if value is None:
                unknown = True
            elif value:
                return True
        return None if unknown else False

    return run


def _in(operand: RowFn, values: frozenset[Any], negate: bool) -> RowFn:
    def run(row: Row) -> Any:
        value = operand(row)
        return None if value is None else (value in values) is not negate

    return run


def _conditional(cond: RowFn, then: RowFn, otherwise: RowFn) -> RowFn:
    """Evaluates only the taken branch; a None condition takes `otherwise`."""
    return lambda row: then(row) if cond(row) else otherwise(row)


def _call(node: Call, sub: Callable[[Node], RowFn]) -> RowFn:
    function = FUNCTIONS[node.name]
    if node.name == "if_else":
        return _conditional(*(sub(arg) for arg in node.args))
    if node.name == "coalesce":
        return _coalesce([sub(arg) for arg in node.args])
    if node.name == "is_null":
        operand = sub(node.args[0])
        return lambda row: operand(row) is None
    impl = function.impl
    if impl is None or function.nulls is not Nulls.PROPAGATE:
        msg = f"internal: function {node.name!r} has no compiler rule"
        raise TypeError(msg)
    bound = bound_call(node)
    if bound is not None:
        first, rest = sub(bound[0]), bound[1]
        if not rest:
            return lambda row: None if (value := first(row)) is None else impl(value)

        def one(row: Row) -> Any:
            value = first(row)
            return None if value is None else impl(value, *rest)

        return one
    args = [sub(arg) for arg in node.args]
    if len(args) == 2:
        first_fn, second_fn = args

        def two(row: Row) -> Any:
            a = first_fn(row)
            b = second_fn(row)
            return None if a is None or b is None else impl(a, b)

        return two

    def many(row: Row) -> Any:
        values = [arg(row) for arg in args]
        return None if None in values else impl(*values)

    return many


def _coalesce(args: list[RowFn]) -> RowFn:
    def run(row: Row) -> Any:
        for arg in args:
            value = arg(row)
            if value is not None:
                return value
        return None

    return run
