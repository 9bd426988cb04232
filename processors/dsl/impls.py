"""Plain-Python implementations of the DSL's functions, called with non-null arguments.

Each returns None, rather than raising, for inputs outside its domain (`sqrt(-1)`, `log(0)`,
`to_int('abc')`, a date past year 9999): one odd event must not stop a stream.

    >>> hour_of_day(1_700_000_000_000), day_of_week(1_700_000_000_000), date_str(1_700_000_000_000)
    (22, 1, '2023-11-14')
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from typing import Any

__all__ = [
    "bucket",
    "ceil",
    "clip",
    "concat",
    "contains",
    "date_str",
    "day_of_week",
    "divide",
    "ends_with",
    "exp",
    "floor",
    "floor_divide",
    "hour_of_day",
    "is_weekend",
    "log",
    "minute_of_hour",
    "modulo",
    "power",
    "round_",
    "sqrt",
    "starts_with",
    "stringify",
    "substr",
    "to_float",
    "to_int",
]

_MS_PER_MINUTE = 60_000
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


# --- arithmetic: None instead of ZeroDivisionError / OverflowError / a complex result ---


def divide(a: Any, b: Any) -> Any:
    try:
        return a / b
    except ArithmeticError:
        return None


def floor_divide(a: Any, b: Any) -> Any:
    try:
        return a // b
    except ArithmeticError:
        return None


def modulo(a: Any, b: Any) -> Any:
    try:
        return a % b
    except ArithmeticError:
        return None


def power(a: Any, b: Any) -> float | None:
    """`a ** b` as a float (like SQL's POWER); None when not a finite real number or out of range."""
    try:
        return math.pow(a, b)
    except (ArithmeticError, ValueError):
        return None


# --- math ---


def round_(x: Any, ndigits: int = 0) -> Any:
    """Python's `round` (half to even); keeps the type of `x`."""
    try:
        return round(x, ndigits)
    except (ArithmeticError, ValueError):
        return None


def floor(x: Any) -> int | None:
    try:
        return math.floor(x)
    except (ArithmeticError, ValueError):  # inf, nan
        return None


def ceil(x: Any) -> int | None:
    try:
        return math.ceil(x)
    except (ArithmeticError, ValueError):
        return None


def sqrt(x: Any) -> float | None:
    return math.sqrt(x) if x >= 0 else None


def log(x: Any) -> float | None:
    return math.log(x) if x > 0 else None


def exp(x: Any) -> float | None:
    try:
        return math.exp(x)
    except OverflowError:
        return None


def clip(x: Any, lo: Any, hi: Any) -> Any:
    """`min(max(x, lo), hi)`: when lo > hi the result is hi, as numpy.clip."""
    return min(max(x, lo), hi)


def bucket(x: Any, *edges: Any) -> int:
    """The index of the first edge greater than `x` (edges ascending): `bucket(5, 1, 5, 10) == 2`."""
    return bisect.bisect_right(edges, x)


# --- strings and conversions ---


def stringify(value: Any) -> str:
    """How `concat` and `to_str` write a value: bools as 'true'/'false', numbers as Python's `str`."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str) else str(value)


def concat(*values: Any) -> str:
    return "".join(map(stringify, values))


def substr(s: str, start: int, length: int | None = None) -> str:
    """`length` characters from 0-based `start` (negative: from the end); all the rest without `length`."""
    if start < 0:
        start = max(len(s) + start, 0)
    if length is None:
        return s[start:]
    return s[start : start + max(length, 0)]


def contains(s: str, sub: str) -> bool:
    return sub in s


def starts_with(s: str, prefix: str) -> bool:
    return s.startswith(prefix)


def ends_with(s: str, suffix: str) -> bool:
    return s.endswith(suffix)


def to_float(x: Any) -> float | None:
    try:
        return float(x)
    except (ValueError, OverflowError):
        return None


def to_int(x: Any) -> int | None:
    """Truncates toward zero; strings parse as int, else as float ('3.7' → 3); None if unparseable or inf/nan."""
    if isinstance(x, str):
        try:
            return int(x)
        except ValueError:
            x = to_float(x)
            if x is None:
                return None
    try:
        return int(x)
    except (ValueError, OverflowError):
        return None


# --- time: UTC epoch milliseconds, optionally shifted by a fixed offset in hours ---


def hour_of_day(ts_ms: Any, utc_offset_hours: Any = 0) -> int | None:
    try:
        return int((ts_ms + utc_offset_hours * _MS_PER_HOUR) // _MS_PER_HOUR % 24)
    except (ValueError, OverflowError):  # a float inf / nan
        return None


def minute_of_hour(ts_ms: Any, utc_offset_hours: Any = 0) -> int | None:
    try:
        return int((ts_ms + utc_offset_hours * _MS_PER_HOUR) // _MS_PER_MINUTE % 60)
    except (ValueError, OverflowError):
        return None


def day_of_week(ts_ms: Any, utc_offset_hours: Any = 0) -> int | None:
    """0 = Monday … 6 = Sunday."""
    try:
        return int(((ts_ms + utc_offset_hours * _MS_PER_HOUR) // _MS_PER_DAY + _EPOCH_WEEKDAY) % 7)
    except (ValueError, OverflowError):
        return None


def is_weekend(ts_ms: Any, utc_offset_hours: Any = 0) -> bool | None:
    day = day_of_week(ts_ms, utc_offset_hours)
    return None if day is None else day >= 5


def date_str(ts_ms: Any, utc_offset_hours: Any = 0) -> str | None:
    """'YYYY-MM-DD'; None outside years 1..9999."""
    try:
        days = int((ts_ms + utc_offset_hours * _MS_PER_HOUR) // _MS_PER_DAY)
        return dt.date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    except (ValueError, OverflowError):
        return None
