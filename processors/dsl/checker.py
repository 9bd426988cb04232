"""Static checks of a parsed expression against a schema: names, arity and types, all problems at once.

Every node gets a `FieldType`. A node with a problem is typed `any`, so one mistake does not cascade
into more messages, and checking goes on to report every independent problem:

    >>> from processors.dsl.parser import parse
    >>> from processors.dsl.types import FLOAT, STR
    >>> text = "distnce_km + lower(surge)"
    >>> checked = check(parse(text).node, text, {"distance_km": FLOAT, "surge": FLOAT, "city": STR})
    >>> [str(p) for p in checked.problems]  # doctest: +NORMALIZE_WHITESPACE
    ["at column 1: unknown field 'distnce_km'; did you mean 'distance_km'? (fields: city, distance_km, surge)",
     'at column 20: argument 1 (s) of lower(s: str) -> str must be str; got float (surge)']
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.dsl.exceptions import DslProblem
from processors.dsl.functions import FUNCTIONS, HINTS, Function
from processors.dsl.nodes import Call, Compare, Conditional, Const, Field, InList, Invalid, Logical, Node, Operation
from processors.dsl.types import ANY, BOOL, FLOAT, INT, NULL, STR, FieldType, Kind, Schema, unify

__all__ = ["Checked", "check", "type_of_value"]

_MAX_LISTED_FIELDS = 30
_LOOSE = (Kind.ANY, Kind.NULL)  # accepted wherever a value is expected


@dataclass
class Checked:
    """The type of every node (by `id(node)`), the fields referenced and the problems found."""

    result: FieldType
    types: dict[int, FieldType] = field(default_factory=dict)
    fields: set[str] = field(default_factory=set)
    problems: list[DslProblem] = field(default_factory=list)


def check(node: Node, text: str, schema: Schema | None) -> Checked:
    """Type `node` (the tree of `text`) against `schema`; None as schema: every field exists, typed any."""
    checker = _Checker(text, schema)
    result = checker.visit(node)
    checker.out.result = result
    checker.out.problems.sort(key=lambda p: (p.line, p.column))
    return checker.out


def type_of_value(value: Any) -> FieldType:
    """The type of a literal."""
    if value is None:
        return NULL
    return {bool: BOOL, int: INT, float: FLOAT, str: STR}.get(type(value), ANY)


def _describe(node: Node, t: FieldType) -> str:
    if isinstance(node, Field):
        return f"{t} ({node.name})"
    if isinstance(node, Const):
        return f"{t} ({node.value!r})"
    return str(t)


class _Checker:
    def __init__(self, text: str, schema: Schema | None) -> None:
        self.text = text
        self.schema = schema
        self.out = Checked(ANY)

    def problem(self, node: Node, message: str) -> FieldType:
        self.out.problems.append(DslProblem(self.text, message, node.column, node.line))
        return ANY

    def visit(self, node: Node) -> FieldType:
        t = self.type_of(node)
        self.out.types[id(node)] = t
        return t

    def type_of(self, node: Node) -> FieldType:
        match node:
            case Const(value=value):
                return type_of_value(value)
            case Field():
                return self.field(node)
            case Operation(op=op, operands=(operand,)):
                return self.unary(node, op, operand)
            case Operation(op=op, operands=(left, right)):
                return self.binary(node, op, left, right)
            case Logical():
                return self.logical(node)
            case Compare():
                return self.compare(node)
            case InList():
                return self.in_list(node)
            case Conditional():
                return self.conditional(node)
            case Call():
                return self.call(node)
        if not isinstance(node, Invalid):
            msg = f"internal: the checker got a {type(node).__name__} node; expected a DSL node"
            raise TypeError(msg)
        return ANY

    def field(self, node: Field) -> FieldType:
        self.out.fields.add(node.name)
        if self.schema is None:
            return ANY
        if node.name in self.schema:
            return self.schema[node.name]
        names = sorted(self.schema)
        close = difflib.get_close_matches(node.name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if node.name in FUNCTIONS:
            hint = f"; {node.name} is a function: call it as {FUNCTIONS[node.name].signature}"
        listed = ", ".join(names[:_MAX_LISTED_FIELDS]) + (", ..." if len(names) > _MAX_LISTED_FIELDS else "")
        return self.problem(node, f"unknown field {node.name!r}{hint} (fields: {listed or 'none'})")

    def unary(self, node: Node, op: str, operand: Node) -> FieldType:
        t = self.visit(operand)
        if op == "not":
            if t.kind in (Kind.BOOL, *_LOOSE):
                return BOOL.with_nullable(t.nullable)
            return self.problem(node, f"'not' expects a bool; got {_describe(operand, t)}")
        if t.kind.is_numeric or t.kind in _LOOSE:
            return t
        return self.problem(node, f"unary '{op}' expects a number; got {_describe(operand, t)}")

    def binary(self, node: Node, op: str, left: Node, right: Node) -> FieldType:
        lt, rt = self.visit(left), self.visit(right)
        nullable = lt.nullable or rt.nullable or op in ("/", "//", "%", "**")
        kinds = {lt.kind, rt.kind} - {Kind.NULL}
        if op == "+" and Kind.STR in kinds and kinds <= {Kind.STR, Kind.ANY}:
            return STR.with_nullable(nullable)
        if not all(k.is_numeric or k is Kind.ANY for k in kinds):
            expected = "two numbers or two strings" if op == "+" else "two numbers"
            got = f"{_describe(left, lt)} and {_describe(right, rt)}"
            hint = "; use concat(a, b) to join values as text" if op == "+" and Kind.STR in kinds else ""
            if Kind.BOOL in kinds:
                hint = "; use to_int(flag) to count a bool"
            return self.problem(node, f"operator '{op}' expects {expected}; got {got}{hint}")
        if op in ("/", "**"):
            return FLOAT.with_nullable(nullable)
        if Kind.ANY in kinds:
            return ANY
        if not kinds:
            return NULL
        kind = Kind.INT if kinds == {Kind.INT} else Kind.FLOAT
        return FieldType(kind, nullable)

    def logical(self, node: Logical) -> FieldType:
        nullable = False
        for operand in node.operands:
            t = self.visit(operand)
            nullable = nullable or t.nullable
            if t.kind not in (Kind.BOOL, *_LOOSE):
                hint = "; use coalesce(x, default) for a default value" if node.op == "or" else ""
                self.problem(operand, f"'{node.op}' expects bool operands; got {_describe(operand, t)}{hint}")
        return BOOL.with_nullable(nullable)

    def compare(self, node: Compare) -> FieldType:
        lt, rt = self.visit(node.left), self.visit(node.right)
        result = BOOL.with_nullable(lt.nullable or rt.nullable)
        if Kind.NULL in (lt.kind, rt.kind):
            return self.problem(node, f"'{node.op}' with None is always None; use is_null(x) to test for None")
        if Kind.ANY in (lt.kind, rt.kind) or _comparable(lt.kind, rt.kind, ordered=node.op not in ("==", "!=")):
            return result
        what = "two numbers or two strings" if node.op not in ("==", "!=") else "values of the same type"
        got = f"{_describe(node.left, lt)} and {_describe(node.right, rt)}"
        return self.problem(node, f"'{node.op}' compares {what}; got {got}")

    def in_list(self, node: InList) -> FieldType:
        t = self.visit(node.operand)
        op = "not in" if node.negate else "in"
        kinds = {type_of_value(v).kind for v in node.values}
        if Kind.NULL in kinds:
            self.problem(node, f"None in the list after '{op}' never matches; use is_null(x) to test for None")
        kinds.discard(Kind.NULL)
        if t.kind not in _LOOSE:
            wrong = sorted({k.value for k in kinds if not _comparable(t.kind, k, ordered=False)})
            if wrong:
                got = f"{_describe(node.operand, t)} with a list holding {', '.join(wrong)}"
                self.problem(node, f"'{op}' compares values of the same type; got {got}")
        elif not all(_comparable(a, b, ordered=False) for a in kinds for b in kinds):
            self.problem(node, f"the list after '{op}' mixes {', '.join(sorted(k.value for k in kinds))}")
        return BOOL.with_nullable(t.nullable)

    def conditional(self, node: Conditional) -> FieldType:
        self.condition(node.cond, "'if ... else'")
        then, otherwise = self.visit(node.then), self.visit(node.otherwise)
        common = unify([then, otherwise])
        if common is None:
            return self.problem(node, f"the branches of 'if ... else' have different types: {then} and {otherwise}")
        return common

    def condition(self, node: Node, where: str) -> None:
        t = self.visit(node)
        if t.kind not in (Kind.BOOL, *_LOOSE):
            self.problem(node, f"the condition of {where} must be bool; got {_describe(node, t)}")

    def call(self, node: Call) -> FieldType:
        function = FUNCTIONS.get(node.name)
        if function is None:
            for arg in node.args:
                self.visit(arg)
            return self.problem(node, self.unknown_function(node.name))
        n = len(node.args)
        if n < function.min_args or (function.max_args is not None and n > function.max_args):
            for arg in node.args:
                self.visit(arg)
            return self.problem(
                node, f"{function.name}() takes {function.arity_text()} ({function.signature}); got {n}"
            )
        types = [self.visit(arg) for arg in node.args]
        if self.arguments(function, node.args, types):
            return ANY
        rule = function.result(types)
        if isinstance(rule, str):
            return self.problem(node, f"{function.signature}: {rule}")
        if node.name == "coalesce":
            nullable = all(t.nullable for t in types)
        elif node.name == "if_else":
            nullable = types[1].nullable or types[2].nullable
        else:
            propagates = any(t.nullable for t in types) and function.name != "is_null"
            nullable = propagates or function.may_return_null(types)
        return FieldType(rule, nullable)  # any and null are nullable by construction

    def arguments(self, function: Function, args: Sequence[Node], types: Sequence[FieldType]) -> bool:
        """Check each argument against its parameter; True if any problem was reported."""
        failed = False
        literals: list[Any] = []
        for index, (arg, t) in enumerate(zip(args, types, strict=True)):
            param = function.param_for(index)
            where = f"argument {index + 1} ({param.name}) of {function.signature}"
            if param.constant and not (isinstance(arg, Const) and arg.value is not None):
                self.problem(arg, f"{where} must be a literal; got {_describe(arg, t)}")
                failed = True
            elif t.kind not in param.kinds and t.kind not in _LOOSE:
                expected = {"number": "a number", "number | str": "a number or str"}.get(
                    param.kinds_text, param.kinds_text
                )
                self.problem(arg, f"{where} must be {expected}; got {_describe(arg, t)}")
                failed = True
            elif param.constant and isinstance(arg, Const):
                literals.append(arg.value)
        if not failed and function.validate is not None:
            message = function.validate(literals)
            if message:
                self.problem(args[0], f"{function.signature}: {message}")
                failed = True
        return failed

    def unknown_function(self, name: str) -> str:
        close = difflib.get_close_matches(name, sorted(FUNCTIONS), n=1)
        suggestion = HINTS.get(name) or (close[0] if close else None)
        hint = ""
        if suggestion:
            hint = f"; did you mean {suggestion!r}?" if suggestion in FUNCTIONS else f"; use {suggestion}"
        if self.schema is not None and name in self.schema:
            hint = f"; {name!r} is a field, not a function"
        return f"unknown function {name!r}{hint} (functions: {', '.join(sorted(FUNCTIONS))})"


def _comparable(a: Kind, b: Kind, *, ordered: bool) -> bool:
    if a.is_numeric and b.is_numeric:
        return True
    if a is b and a is Kind.STR:
        return True
    return a is b and a is Kind.BOOL and not ordered
