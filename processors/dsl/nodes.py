"""The checked syntax tree of an expression: the only shapes the parser lets through.

Every node records where it starts (1-based line and column, in characters) so problems found
later — unknown fields, type mismatches — can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Call", "Compare", "Conditional", "Const", "Field", "InList", "Invalid", "Logical", "Node", "Operation"]


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    line: int
    column: int


@dataclass(frozen=True, slots=True, eq=False)
class Const(Node):
    """A literal: int, float, str, bool or None."""

    value: Any


@dataclass(frozen=True, slots=True, eq=False)
class Field(Node):
    """An event field, by name."""

    name: str


@dataclass(frozen=True, slots=True, eq=False)
class Operation(Node):
    """An arithmetic operator (`+ - * / // % **`) or a unary one (`-`, `+`, `not`): one or two operands."""

    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Logical(Node):
    """`and` / `or` over two or more operands (three-valued)."""

    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Compare(Node):
    """One comparison `left op right`; chains `a < b < c` become `and`s of pairs."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True, eq=False)
class InList(Node):
    """`operand in [c1, c2, ...]` (or `not in`): membership in a literal collection of constants."""

    operand: Node
    values: tuple[Any, ...]
    negate: bool


@dataclass(frozen=True, slots=True, eq=False)
class Conditional(Node):
    """`then if cond else otherwise`."""

    cond: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True, eq=False)
class Call(Node):
    """A call of a function of the function table, with positional arguments."""

    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Invalid(Node):
    """A construct the parser refused (already reported); typed `any` so checking goes on."""
