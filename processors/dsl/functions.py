"""The function table: every function the DSL knows, with its parameters, result type and implementation.

    >>> FUNCTIONS["substr"].signature
    'substr(s: str, start: int[, length: int]) -> str'

Null handling per function (see the package docstring): `propagate` — any None argument gives None
without calling the implementation; `accept` — the implementation sees None (`is_null`); `lazy` —
compiled as a special form that evaluates only the arguments it needs (`coalesce`, `if_else`).
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from processors.dsl import impls
from processors.dsl.types import FieldType, Kind, unify

__all__ = ["FUNCTIONS", "HINTS", "Function", "Nulls", "Param"]


class Nulls(enum.Enum):
    PROPAGATE = "propagate"
    ACCEPT = "accept"
    LAZY = "lazy"


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter: the kinds it accepts (`any` and None are accepted everywhere) and whether it must be a literal."""

    name: str
    kinds: frozenset[Kind]
    constant: bool = False

    def __str__(self) -> str:
        return f"{self.name}: {self.kinds_text}"

    @property
    def kinds_text(self) -> str:
        """The accepted kinds as written in signatures: 'number', 'str', 'number | str', 'any'."""
        named = {_NUM: "number", _VALUE: "any", _ORDERED: "number | str"}
        return named.get(self.kinds) or " | ".join(sorted(k.value for k in self.kinds))


ResultRule = Callable[[Sequence[FieldType]], Kind | str]
"""Computes the result kind from the argument types, or returns a message when they do not fit together."""


@dataclass(frozen=True, slots=True)
class Function:
    """One DSL function. `params[required:]` are optional; with `variadic` the last one repeats."""

    name: str
    params: tuple[Param, ...]
    result: ResultRule
    result_text: str
    impl: Callable[..., Any] | None
    doc: str
    required: int = -1  # -1: all params
    variadic: bool = False
    nulls: Nulls = Nulls.PROPAGATE
    may_return_null: Callable[[Sequence[FieldType]], bool] = lambda _types: False
    validate: Callable[[Sequence[Any]], str | None] | None = None  # checks the values of the literal-only params

    @property
    def min_args(self) -> int:
        return len(self.params) if self.required < 0 else self.required

    @property
    def max_args(self) -> int | None:
        return None if self.variadic else len(self.params)

    @property
    def signature(self) -> str:
        """`name(p: kind, ...) -> result`, optional parameters in brackets."""
        fixed = [str(p) for p in self.params[: self.min_args]]
        text = ", ".join(fixed)
        optional = [str(p) for p in self.params[self.min_args :]]
        if optional:
            text += "".join(f"[, {p}" for p in optional) + "]" * len(optional)
        if self.variadic:
            text += ", ..."
        return f"{self.name}({text}) -> {self.result_text}"

    def param_for(self, index: int) -> Param:
        """The parameter that argument `index` (0-based) binds to."""
        return self.params[min(index, len(self.params) - 1)]

    def arity_text(self) -> str:
        low, high = self.min_args, self.max_args
        if high is None:
            return f"at least {low} argument{'s' if low != 1 else ''}"
        if low == high:
            return f"{low} argument{'s' if low != 1 else ''}"
        return f"{low} to {high} arguments"


_NUM = frozenset({Kind.INT, Kind.FLOAT})
_STR = frozenset({Kind.STR})
_BOOL = frozenset({Kind.BOOL})
_INT = frozenset({Kind.INT})
_VALUE = frozenset({Kind.INT, Kind.FLOAT, Kind.STR, Kind.BOOL})
_ORDERED = frozenset({Kind.INT, Kind.FLOAT, Kind.STR})


def _returns(kind: Kind) -> ResultRule:
    return lambda _types: kind


def _same(*positions: int) -> ResultRule:
    """The unified kind of the arguments at `positions` (all arguments when empty)."""

    def rule(types: Sequence[FieldType]) -> Kind | str:
        chosen = [types[i] for i in positions] if positions else list(types)
        common = unify(chosen)
        if common is None:
            kinds = ", ".join(sorted({t.kind.value for t in chosen if t.kind is not Kind.NULL}))
            return f"arguments must have compatible types; got {kinds}"
        return common.kind

    return rule


def _never(_types: Sequence[FieldType]) -> bool:
    return False


def _always(_types: Sequence[FieldType]) -> bool:
    return True


def _if_any(*kinds: Kind) -> Callable[[Sequence[FieldType]], bool]:
    return lambda types: any(t.kind in kinds or t.kind is Kind.ANY for t in types)


def _ascending_edges(edges: Sequence[Any]) -> str | None:
    if any(b <= a for a, b in itertools.pairwise(edges)):
        return f"bucket edges must be strictly ascending; got {', '.join(map(repr, edges))}"
    if any(isinstance(e, float) and math.isnan(e) for e in edges):
        return "bucket edges must be numbers, not nan"
    return None


def _time(name: str, result: Kind, impl: Callable[..., Any], doc: str, text: str) -> Function:
    params = (Param("ts_ms", _NUM), Param("utc_offset_hours", _NUM))
    # float timestamps may be inf/nan: None then
    return Function(name, params, _returns(result), text, impl, doc, required=1, may_return_null=_if_any(Kind.FLOAT))


def _str1(name: str, impl: Callable[[str], Any], result: Kind, doc: str) -> Function:
    return Function(name, (Param("s", _STR),), _returns(result), result.value, impl, doc)


def _str2(name: str, impl: Callable[[str, str], Any], second: str, doc: str) -> Function:
    return Function(name, (Param("s", _STR), Param(second, _STR)), _returns(Kind.BOOL), "bool", impl, doc)


def _num1(name: str, impl: Callable[[Any], Any], result: Kind | None, doc: str, nullable: bool = False) -> Function:
    rule = _returns(result) if result else _same()
    text = result.value if result else "same as x"
    may = _always if nullable else _if_any(Kind.FLOAT) if result is Kind.INT else _never
    return Function(name, (Param("x", _NUM),), rule, text, impl, doc, may_return_null=may)


_TABLE = [
    Function(
        "coalesce",
        (Param("value", _VALUE),),
        _same(),
        "common type",
        None,
        "the first argument that is not None",
        variadic=True,
        nulls=Nulls.LAZY,
    ),
    Function(
        "is_null",
        (Param("value", _VALUE),),
        _returns(Kind.BOOL),
        "bool",
        None,
        "whether the value is None",
        nulls=Nulls.ACCEPT,
    ),
    Function(
        "if_else",
        (Param("cond", _BOOL), Param("then", _VALUE), Param("otherwise", _VALUE)),
        _same(1, 2),
        "common type",
        None,
        "`then` when cond is True, else `otherwise` (a None cond counts as False)",
        nulls=Nulls.LAZY,
    ),
    _str1("lower", str.lower, Kind.STR, "lower case"),
    _str1("upper", str.upper, Kind.STR, "upper case"),
    _str1("strip", str.strip, Kind.STR, "without leading and trailing whitespace"),
    _str1("length", len, Kind.INT, "number of characters"),
    Function(
        "concat",
        (Param("value", _VALUE),),
        _returns(Kind.STR),
        "str",
        impls.concat,
        "the arguments as strings, joined (None if any is None; bools as 'true'/'false')",
        variadic=True,
    ),
    Function(
        "substr",
        (Param("s", _STR), Param("start", _INT), Param("length", _INT)),
        _returns(Kind.STR),
        "str",
        impls.substr,
        "`length` characters from 0-based `start` (negative counts from the end)",
        required=2,
    ),
    _str2("contains", impls.contains, "sub", "whether `sub` occurs in s"),
    _str2("starts_with", impls.starts_with, "prefix", "whether s starts with `prefix`"),
    _str2("ends_with", impls.ends_with, "suffix", "whether s ends with `suffix`"),
    _num1("abs", abs, None, "absolute value"),
    Function(
        "round",
        (Param("x", _NUM), Param("ndigits", _INT)),
        _same(0),
        "same as x",
        impls.round_,
        "rounded to `ndigits` decimals (default 0), half to even; keeps the type of x",
        required=1,
        may_return_null=_if_any(Kind.FLOAT),
    ),
    _num1("floor", impls.floor, Kind.INT, "largest int <= x (None for inf/nan)"),
    _num1("ceil", impls.ceil, Kind.INT, "smallest int >= x (None for inf/nan)"),
    _num1("sqrt", impls.sqrt, Kind.FLOAT, "square root; None for x < 0", nullable=True),
    _num1("log", impls.log, Kind.FLOAT, "natural logarithm; None for x <= 0", nullable=True),
    _num1("exp", impls.exp, Kind.FLOAT, "e ** x; None on overflow", nullable=True),
    Function("least", (Param("value", _ORDERED),), _same(), "common type", min, "the smallest argument", variadic=True),
    Function(
        "greatest", (Param("value", _ORDERED),), _same(), "common type", max, "the largest argument", variadic=True
    ),
    Function(
        "clip",
        (Param("x", _NUM), Param("lo", _NUM), Param("hi", _NUM)),
        _same(),
        "common type",
        impls.clip,
        "min(max(x, lo), hi)",
    ),
    Function(
        "to_float",
        (Param("x", _VALUE),),
        _returns(Kind.FLOAT),
        "float",
        impls.to_float,
        "x as a float; None for an unparseable string",
        may_return_null=_if_any(Kind.STR),
    ),
    Function(
        "to_int",
        (Param("x", _VALUE),),
        _returns(Kind.INT),
        "int",
        impls.to_int,
        "x as an int, truncated toward zero; None for an unparseable string, inf or nan",
        may_return_null=_if_any(Kind.STR, Kind.FLOAT),
    ),
    Function(
        "to_str",
        (Param("x", _VALUE),),
        _returns(Kind.STR),
        "str",
        impls.stringify,
        "x as a string (bools as 'true'/'false')",
    ),
    _time("hour_of_day", Kind.INT, impls.hour_of_day, "hour 0-23 of UTC epoch ms (+ offset hours)", "int"),
    _time("minute_of_hour", Kind.INT, impls.minute_of_hour, "minute 0-59 of UTC epoch ms (+ offset hours)", "int"),
    _time("day_of_week", Kind.INT, impls.day_of_week, "0 = Monday ... 6 = Sunday, of UTC epoch ms (+ offset)", "int"),
    _time("is_weekend", Kind.BOOL, impls.is_weekend, "Saturday or Sunday, of UTC epoch ms (+ offset)", "bool"),
    Function(
        "date_str",
        (Param("ts_ms", _NUM), Param("utc_offset_hours", _NUM)),
        _returns(Kind.STR),
        "str",
        impls.date_str,
        "'YYYY-MM-DD' of UTC epoch ms (+ offset); None outside years 1-9999",
        required=1,
        may_return_null=_always,
    ),
    Function(
        "bucket",
        (Param("x", _NUM), Param("edge", _NUM, constant=True)),
        _returns(Kind.INT),
        "int",
        impls.bucket,
        "index of the first edge > x: a histogram bin (edges: ascending literals)",
        variadic=True,
        validate=_ascending_edges,
    ),
]

FUNCTIONS: Mapping[str, Function] = {f.name: f for f in _TABLE}
"""Every DSL function by name."""

HINTS: Mapping[str, str] = {
    "max": "greatest",
    "min": "least",
    "len": "length",
    "str": "to_str",
    "int": "to_int",
    "float": "to_float",
    "isnull": "is_null",
    "ifnull": "coalesce",
    "nvl": "coalesce",
    "iif": "if_else",
    "pow": "the '**' operator: x ** y",
    "startswith": "starts_with",
    "endswith": "ends_with",
    "substring": "substr",
}
"""Well-known names from Python or SQL and the DSL's spelling (or what to use instead), for suggestions."""
