"""The one rule for numbers the platform cannot represent exactly.

A numeric value that is not finite (an arithmetic overflow to ±inf, NaN) or whose magnitude
exceeds 2**53 is null. Below 2**53 every integer is exact as a float64, JSON readers in every
language agree on the value, and sums of micro-units stay exact; above it, or at ±inf, a value
means nothing a feature could use. The DSL applies the rule to every numeric result, and the
aggregation kernels apply it again to whatever they aggregate, so no value from any expression
can overflow a kernel, a state encoding or a JSON writer.

>>> bounded_number(1e308 * 10), bounded_number(2.0**54), bounded_number(3), bounded_number("x")
(None, None, 3, 'x')
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_MAGNITUDE", "bounded_number"]

MAX_MAGNITUDE = 2**53
_MAX_FLOAT = float(MAX_MAGNITUDE)


def bounded_number(value: Any) -> Any:
    """`value`, or None when it is a float or int outside the rule (non-numbers pass unchanged)."""
    kind = type(value)
    if kind is float:
        return value if -_MAX_FLOAT <= value <= _MAX_FLOAT else None  # NaN fails both comparisons
    if kind is int:
        return value if -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE else None
    return value
