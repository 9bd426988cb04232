"""The encoding of feature values shared by every backend: a JSON object, written by orjson.

JSON is what `FeatureUpdate` events carry too, so a value reads back online exactly as a consumer
of the feature topic sees it: ints stay ints, floats stay floats, NaN and ±inf become `null`.
numpy scalars are accepted and read back as Python numbers.

>>> decode_values(encode_values({"requests_10m": 3, "zone": "Zürich", "ratio": None}, "g", "e"), "g", "e")
{'requests_10m': 3, 'zone': 'Zürich', 'ratio': None}
"""

from __future__ import annotations

from typing import Any

import orjson

from state.exceptions import CorruptRecordError, InvalidRecordError

__all__ = ["decode_values", "encode_values"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def encode_values(values: dict[str, Any], group: str, entity: str) -> bytes:
    """`values` as UTF-8 JSON; the error names the record (group, entity) if a value is not encodable."""
    try:
        return orjson.dumps(values, option=_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        msg = (
            f"OnlineRecord(group={group!r}, entity={entity!r}).values must map str feature names to "
            f"float, int, str, bool or None: {exc}"
        )
        raise InvalidRecordError(msg) from exc


def decode_values(data: bytes, group: str, entity: str) -> dict[str, Any]:
    """The dict encoded by `encode_values`; the error names the record if the bytes are not one."""
    try:
        values = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = f"stored record {group!r}/{entity!r}: values are not valid JSON: {exc}"
        raise CorruptRecordError(msg) from exc
    if type(values) is not dict:
        msg = f"stored record {group!r}/{entity!r}: values must be a JSON object, got {type(values).__name__}"
        raise CorruptRecordError(msg)
    return values
