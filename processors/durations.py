"""Durations as written in feature definitions: `500ms`, `30s`, `10m`, `1h`, `7d`."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PATTERN = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(text: str | int) -> int:
    """Milliseconds in a duration.

    >>> parse_duration("10m"), parse_duration("7d")
    (600000, 604800000)
    """
    if isinstance(text, bool):
        msg = f"expected a duration such as 10m, 1h or 7d, got {text!r}"
        raise ValueError(msg)
    if isinstance(text, int):
        if text <= 0:
            msg = f"expected a positive duration, got {text}"
            raise ValueError(msg)
        return text
    match = _PATTERN.match(str(text))
    if match is None:
        msg = f"expected a duration such as 500ms, 30s, 10m, 1h, 7d or 2w, got {text!r}"
        raise ValueError(msg)
    value = int(match.group(1)) * _UNITS_MS[match.group(2)]
    if value <= 0:
        msg = f"expected a positive duration, got {text!r}"
        raise ValueError(msg)
    return value


def format_duration(ms: int) -> str:
    """The shortest exact spelling of a duration.

    >>> format_duration(3_600_000), format_duration(90_000)
    ('1h', '90s')
    """
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
