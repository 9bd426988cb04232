"""Parse expression text into the DSL's syntax tree, accepting only whitelisted Python syntax.

The text is parsed with `ast.parse(text, mode="eval")` — never evaluated — and every node is
checked against a whitelist: constants (int, float, str, bool, None), field names, arithmetic,
comparisons (`in` only against a literal list of constants), `and`/`or`/`not`, `a if c else b`
and calls of plain function names with positional arguments. Anything else is reported, by
construct and column, and parsing goes on so that every problem is reported at once:

    >>> [str(p) for p in parse("a.b + c[0]").problems]  # doctest: +NORMALIZE_WHITESPACE
    ["at column 1: attribute access 'a.b' is not allowed; expected fields, literals, operators and function calls",
     "at column 7: subscript 'c[0]' is not allowed; expected fields, literals, operators and function calls"]
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field
from typing import Any

from processors.dsl.exceptions import DslProblem
from processors.dsl.nodes import Call, Compare, Conditional, Const, Field, InList, Invalid, Logical, Node, Operation

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "Parsed", "parse"]

MAX_LENGTH = 10_000
"""Longest accepted expression text, in characters."""
MAX_DEPTH = 100
"""Deepest accepted nesting of operators and calls."""

_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}
_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_FORBIDDEN_OPERATORS = {
    ast.BitAnd: ("&", "; use 'and'"),
    ast.BitOr: ("|", "; use 'or'"),
    ast.BitXor: ("^", "; use '**' for powers"),
    ast.LShift: ("<<", ""),
    ast.RShift: (">>", ""),
    ast.MatMult: ("@", ""),
    ast.Invert: ("~", "; use 'not'"),
}
_CONSTRUCTS = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Slice: "slice",
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.Dict: "dict literal",
    ast.NamedExpr: "assignment expression (:=)",
    ast.JoinedStr: "f-string",
    ast.Starred: "starred expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield from",
}
_LITERAL_TYPES = (bool, int, float, str, type(None))
_ALLOWED = "expected fields, literals, operators and function calls"


@dataclass(frozen=True, slots=True)
class Parsed:
    """The tree (None when the text is not even valid syntax) and the problems found while parsing."""

    node: Node | None
    problems: list[DslProblem] = field(default_factory=list)


def parse(text: str) -> Parsed:
    """Parse `text` into a `Node` tree, reporting every construct outside the whitelist."""
    body = text.lstrip()  # ast.parse refuses leading blanks ("unexpected indent"); positions stay relative to `text`
    shift = _Shift.of(text[: len(text) - len(body)])
    if not body.strip():
        return Parsed(None, [DslProblem(text, "empty expression; expected e.g. a field name such as distance_km", 1)])
    if len(text) > MAX_LENGTH:
        return Parsed(None, [DslProblem(text, f"expression too long: {len(text)} characters, at most {MAX_LENGTH}", 1)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences: harmless in a string literal
            tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        return Parsed(None, [_syntax_problem(text, body, shift, exc)])
    except (RecursionError, MemoryError):
        return Parsed(None, [DslProblem(text, f"expression nested too deeply; at most {MAX_DEPTH} levels", 1)])
    converter = _Converter(text, body, shift)
    node = converter.convert(tree.body, 0)
    return Parsed(node, sorted(converter.problems, key=lambda p: (p.line, p.column)))


@dataclass(frozen=True, slots=True)
class _Shift:
    """Where the parsed body starts inside the text: whole lines skipped, and columns on its first line."""

    lines: int
    columns: int

    @classmethod
    def of(cls, lead: str) -> _Shift:
        return cls(lead.count("\n"), len(lead) - (lead.rfind("\n") + 1))

    def apply(self, line: int, column: int) -> tuple[int, int]:
        return line + self.lines, column + (self.columns if line == 1 else 0)


def _syntax_problem(text: str, body: str, shift: _Shift, exc: SyntaxError) -> DslProblem:
    line = exc.lineno or 1
    lines = body.splitlines() or [""]
    offset = exc.offset or 0
    if offset <= 0:  # reported at the end of input
        offset = len(lines[min(line, len(lines)) - 1]) + 1
    reason = exc.msg if exc.msg != "invalid syntax" else "not a valid expression"
    text_line = lines[min(line, len(lines)) - 1]
    if text_line[offset - 1 : offset] == "=" and text_line[offset : offset + 1] != "=":
        reason += "; compare with '=='"
    line, column = shift.apply(line, offset)
    return DslProblem(text, f"invalid syntax: {reason}", column, line)


class _Converter:
    def __init__(self, text: str, body: str, shift: _Shift) -> None:
        self.text = text
        self.body = body
        self.lines = [line.encode() for line in body.splitlines()]
        self.shift = shift
        self.problems: list[DslProblem] = []
        self.too_deep = False

    def where(self, node: ast.AST) -> tuple[int, int]:
        """1-based (line, column) in characters of an ast node (whose col_offset counts UTF-8 bytes)."""
        line = getattr(node, "lineno", 1)
        raw = self.lines[line - 1] if line - 1 < len(self.lines) else b""
        column = len(raw[: getattr(node, "col_offset", 0)].decode(errors="ignore")) + 1
        return self.shift.apply(line, column)

    def problem(self, node: ast.AST, message: str) -> Invalid:
        line, column = self.where(node)
        self.problems.append(DslProblem(self.text, message, column, line))
        return Invalid(line, column)

    def source(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.body, node) or ast.unparse(node)
        return segment if len(segment) <= 40 else segment[:37] + "..."

    def convert(self, node: ast.expr, depth: int) -> Node:
        if depth > MAX_DEPTH:
            if self.too_deep:
                return Invalid(*self.where(node))
            self.too_deep = True
            return self.problem(node, f"expression nested too deeply; at most {MAX_DEPTH} levels")
        line, column = self.where(node)
        deeper = depth + 1
        match node:
            case ast.Constant(value=value):
                if isinstance(value, _LITERAL_TYPES):
                    return Const(line, column, value)
                return self.problem(
                    node,
                    f"{_literal_name(value)} {self.source(node)} is not allowed; "
                    "expected an int, float, str, bool or None literal",
                )
            case ast.Name(id=name):
                return Field(line, column, name)
            case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as value)) if _is_number(value):
                return Const(line, column, -value)
            case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
                return Operation(line, column, _UNARY[type(op)], (self.convert(operand, deeper),))
            case ast.BinOp(left=left, op=op, right=right) if type(op) in _ARITHMETIC:
                operands = (self.convert(left, deeper), self.convert(right, deeper))
                return Operation(line, column, _ARITHMETIC[type(op)], operands)
            case ast.BinOp(op=op) | ast.UnaryOp(op=op) if type(op) in _FORBIDDEN_OPERATORS:
                symbol, hint = _FORBIDDEN_OPERATORS[type(op)]
                self.convert_children(node, deeper)
                return self.problem(node, f"operator '{symbol}' is not allowed{hint}")
            case ast.BoolOp(op=op, values=values):
                name = "and" if isinstance(op, ast.And) else "or"
                return Logical(line, column, name, tuple(self.convert(value, deeper) for value in values))
            case ast.Compare():
                return self.compare(node, deeper)
            case ast.IfExp(test=test, body=then, orelse=otherwise):
                parts = (self.convert(test, deeper), self.convert(then, deeper), self.convert(otherwise, deeper))
                return Conditional(line, column, *parts)
            case ast.Call():
                return self.call(node, deeper)
            case ast.List() | ast.Tuple() | ast.Set():
                self.convert_children(node, deeper)
                return self.problem(
                    node,
                    f"{_collection_name(node)} {self.source(node)} is only allowed "
                    "on the right of 'in', as in: city in ['nyc', 'sf']",
                )
        construct = _CONSTRUCTS.get(type(node), type(node).__name__)
        return self.problem(node, f"{construct} {self.source(node)!r} is not allowed; {_ALLOWED}")

    def convert_children(self, node: ast.AST, depth: int) -> None:
        """Check the operands of a refused node too, so that their problems are reported as well."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.convert(child, depth)

    def compare(self, node: ast.Compare, depth: int) -> Node:
        line, column = self.where(node)
        left = self.convert(node.left, depth)
        pairs: list[Node] = []
        for op, right_ast in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                values = self.literal_values(right_ast, "not in" if isinstance(op, ast.NotIn) else "in")
                pairs.append(InList(line, column, left, values, isinstance(op, ast.NotIn)))
                left = Invalid(*self.where(right_ast))  # a chain past a literal list compares with the list: refused
                continue
            right = self.convert(right_ast, depth)
            if isinstance(op, ast.Is | ast.IsNot):
                pairs.append(self.problem(node, "'is' comparisons are not allowed; use is_null(x), or == for values"))
            else:
                pairs.append(Compare(line, column, _COMPARE[type(op)], left, right))
            left = right
        return pairs[0] if len(pairs) == 1 else Logical(line, column, "and", tuple(pairs))

    def literal_values(self, node: ast.expr, op: str) -> tuple[Any, ...]:
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            values: list[Any] = []
            for element in node.elts:
                if isinstance(element, ast.Constant) and isinstance(element.value, _LITERAL_TYPES):
                    values.append(element.value)
                elif (
                    isinstance(element, ast.UnaryOp)
                    and isinstance(element.op, ast.USub)
                    and isinstance(element.operand, ast.Constant)
                    and isinstance(number := element.operand.value, int | float)
                    and _is_number(number)
                ):
                    values.append(-number)
                else:
                    self.problem(
                        element, f"the list after '{op}' may hold only literal constants; got {self.source(element)!r}"
                    )
            return tuple(values)
        hint = "; use contains(s, sub) for substrings" if isinstance(node, ast.Name | ast.Constant) else ""
        self.problem(
            node,
            f"the right side of '{op}' must be a literal list of constants such as ['a', 'b']; "
            f"got {self.source(node)!r}{hint}",
        )
        self.convert_children(node, 0)
        return ()

    def call(self, node: ast.Call, depth: int) -> Node:
        line, column = self.where(node)
        args = tuple(self.convert(arg, depth) for arg in node.args)  # a Starred arg is refused by convert
        for keyword in node.keywords:
            name = f"{keyword.arg}=" if keyword.arg else "**"
            self.problem(keyword, f"keyword argument '{name}' is not allowed; pass arguments by position")
            self.convert(keyword.value, depth)
        if not isinstance(node.func, ast.Name):
            self.convert_children(node.func, depth)
            construct = _CONSTRUCTS.get(type(node.func), "an expression")
            return self.problem(
                node,
                f"only functions called by name are allowed, as in lower(city); "
                f"got a call of {construct} {self.source(node.func)!r}",
            )
        return Call(line, column, node.func.id, args)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _literal_name(value: object) -> str:
    return {bytes: "bytes literal", complex: "complex number"}.get(type(value), "literal")


def _collection_name(node: ast.expr) -> str:
    return {ast.List: "a list", ast.Tuple: "a tuple", ast.Set: "a set"}[type(node)]
