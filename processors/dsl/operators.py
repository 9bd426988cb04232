"""The binary operators on non-null operands; None propagation is the compilers' job.

>>> ARITHMETIC["/"](1, 0), ARITHMETIC["**"](-8, 0.5), ARITHMETIC["/"](7, 2)
(None, None, 3.5)
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Mapping
from typing import Any

from processors.dsl import impls

__all__ = ["ARITHMETIC", "COMPARISONS", "arithmetic"]

ARITHMETIC: Mapping[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": impls.divide,
    "//": impls.floor_divide,
    "%": impls.modulo,
    "**": impls.power,
}
"""Binary operators on non-null operands (None propagation is the compiler's)."""


def arithmetic(symbol: str, *, checked: bool) -> Callable[[Any, Any], Any]:
    """The implementation of binary operator `symbol`.

    With `checked` (an operand is typed `any`) the operands are verified at run time: numbers, or two
    strings for `+` — so a field of unknown type can never turn `x * 1000000000` into a huge string.
    """
    op = ARITHMETIC[symbol]
    if not checked:
        return op

    def run(a: Any, b: Any) -> Any:
        if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
            return op(a, b)
        if symbol == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        msg = f"operator '{symbol}' got {type(a).__name__} and {type(b).__name__}; expected numbers"
        raise TypeError(msg)

    return run


COMPARISONS: Mapping[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
