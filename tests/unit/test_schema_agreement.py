"""What the exported JSON Schemas allow is what `EventDecoder` accepts, and the reverse.

(a) Instances generated from every exported schema (hypothesis-jsonschema) are accepted.
(b) Candidates made by breaking a valid instance in every way a field can break: the decoder
    accepts one only if the schema (Draft 2020-12, on what Python's `json` reads) validates it,
    and for strict JSON (what orjson reads) the two verdicts are equal.

Inherent exceptions, where the verdicts differ by design (tested below as such):
- Input that is not strict JSON (NaN, Infinity, 1e400, lone surrogates, invalid UTF-8): Python's
  `json` reads some of it and the schema may then call it valid; the decoder refuses it.
- A pattern's `$` matches before a trailing newline in Python's `re` (which `jsonschema` uses),
  not in pydantic's Rust regex: `{"0\\n": 1}` as `source_offsets` passes the schema only.
- Event times more than `max_future_ms` ahead of the clock: the decoder refuses them, the schema
  cannot know the clock (the check is run here with the clock at the end of valid event times).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from streams.codec import EventDecoder, Rejection
from streams.events import EVENT_TYPES, Event
from streams.events.base import MAX_EVENT_TIME_MS
from streams.schemas import render_schemas

NOW = MAX_EVENT_TIME_MS  # no event time is in the future: the skew is not the schema's business
T = 1_767_225_600_000
SCHEMAS: dict[str, dict[str, Any]] = {
    json.loads(text)["x-affresco"]["event_type"]: json.loads(text) for text in render_schemas().values()
}
NAMES = sorted(EVENT_TYPES)
DECODERS = {name: EventDecoder(EVENT_TYPES[name], max_bytes=10_000_000) for name in NAMES}
VALIDATORS = {name: Draft202012Validator(SCHEMAS[name]) for name in NAMES}
# Values that satisfy the patterns of the schemas.
PATTERN_EXAMPLES = {r"^(0|[1-9][0-9]{0,9})$": "0", r"^[0-9a-f]{64}$": "0" * 64, r"^[a-z][a-z0-9_-]{0,62}$": "prod"}


def accepted(name: str, raw: bytes) -> bool:
    return not isinstance(DECODERS[name].decode_one(raw, now_ms=NOW), Rejection)


def schema_valid(name: str, raw: bytes) -> bool:
    try:
        doc = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        return False
    return VALIDATORS[name].is_valid(doc)


def strict_json(raw: bytes) -> bool:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


# -- (a) generated from the schema -> accepted --------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_instances_of_the_schema_are_accepted(name: str) -> None:
    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(doc=from_schema(SCHEMAS[name]), ascii_only=st.booleans())
    def check(doc: dict[str, Any], ascii_only: bool) -> None:
        raw = json.dumps(doc, ensure_ascii=ascii_only).encode()
        got = DECODERS[name].decode_one(raw, now_ms=NOW)
        assert not isinstance(got, Rejection), (raw[:300], got)
        assert isinstance(got, Event) and got.type_name() == name

    check()


# -- (b) broken instances: accepted => valid, and <=> for strict JSON ------------------------------------
def _branch(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an `anyOf [X, null]`, else the schema itself."""
    for option in prop.get("anyOf", ()):
        if option.get("type") != "null":
            return option
    return prop


def example(prop: dict[str, Any]) -> Any:
    """A value valid by `prop` (every property of our schemas is one of these shapes)."""
    if "const" in prop:
        return prop["const"]
    if "enum" in prop:
        return prop["enum"][0]
    prop = _branch(prop)
    if "enum" in prop:
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "integer":
        return max(prop["minimum"], min(prop["maximum"], T))
    if kind == "number":
        low, high = prop.get("minimum", -1e9), prop.get("maximum", 1e9)
        return (low + high) / 2
    if kind == "string":
        if "pattern" in prop:
            return PATTERN_EXAMPLES[prop["pattern"]]
        return "a" * max(1, prop.get("minLength", 0))
    if kind == "boolean":
        return True
    if kind == "object":
        names = prop.get("propertyNames", {})
        key = PATTERN_EXAMPLES[names["pattern"]] if "pattern" in names else "k"
        return {key: example(prop["additionalProperties"])}
    if kind == "array":
        return [example(prop["items"])]
    msg = f"no example for {prop}"
    raise AssertionError(msg)


def base_instance(name: str) -> dict[str, Any]:
    """Every property set (optional ones too), so that every one can be broken."""
    return {field: example(prop) for field, prop in SCHEMAS[name]["properties"].items()}


def _after(x: float, direction: float) -> float:
    return math.nextafter(x, direction)


def broken_values(prop: dict[str, Any]) -> Iterator[Any]:
    """Values around and beyond what `prop` allows: wrong types, each bound and just past it."""
    yield from [None, True, False, "x", "", 0, -1, 1, 1.5, -0.0, [], {}, [1], 2**63, 2**64, -(2**63) - 1]
    yield from [10**30, 1e300, -1e300, 1e-300, 5e-324]
    if "const" in prop:
        yield prop["const"].upper()
        yield prop["const"] + " "
        yield "bogus"
    if "enum" in prop:
        yield "bogus"
        yield prop["enum"][0].upper()
    b = _branch(prop)
    if "enum" in b:
        yield "bogus"
        yield b["enum"][0].upper()
    kind = b.get("type")
    if kind == "integer":
        low, high = b["minimum"], b["maximum"]
        yield from [low, high, low - 1, high + 1, float(low), float(high), low + 0.5, high - 0.5, str(low)]
        yield from [float(low - 1), float(high) * 2, float(high + 1), -0.0 if low <= 0 else float(low) + 1]
    if kind == "number":
        for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if bound in b:
                v = b[bound]
                yield from [v, _after(v, -math.inf), _after(v, math.inf), v - 1, v + 1, int(v)]
        yield from [1.0, 7, 2**53 + 1]
    if kind == "string":
        low, high = b.get("minLength", 0), b.get("maxLength", 0)
        if high:
            yield from ["a" * high, "a" * (high + 1), "é" * high, "é" * (high + 1), "😀" * high, "😀" * (high + 1)]
        if low > 1:
            yield "a" * (low - 1)
        if "pattern" in b:
            good = PATTERN_EXAMPLES[b["pattern"]]
            # (not `good + "\n"`: see the inherent exceptions)
            yield from [good + "x", "x" + good, good.upper(), "0" + good, " " + good]
    if kind == "object":
        names, values = b.get("propertyNames", {}), b["additionalProperties"]
        key = PATTERN_EXAMPLES[names["pattern"]] if "pattern" in names else "k"
        yield from [{"": example(values)}, {"k" * 201: example(values)}, {"k" * 256: example(values)}]
        yield from [{"01": example(values)}, {"-1": example(values)}, {"a": example(values)}, {"12345678901": 1}]
        yield {str(i) if "pattern" in names else f"k{i}": example(values) for i in range(b["maxProperties"] + 1)}
        yield {str(i) if "pattern" in names else f"k{i}": example(values) for i in range(b["maxProperties"])}
        for v in broken_values(values):
            yield {key: v}
    if kind == "array":
        items, high = b["items"], b["maxItems"]
        yield from [[example(items)] * high, [example(items)] * (high + 1), [example(items), example(items)]]
        for v in broken_values(items):
            yield [v]
            yield [example(items), v]


# Tokens written into the document in place of a value (many are not JSON at all).
TOKENS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1E400", b'"\\ud800"', b'"\\udc00x"', b'"\xff"',
    b'"\xc3\x28"', b"1e308", b"0e0", b"-0", b"1E3", b"100000000000000000000000", b"1.0e0", b"01", b"+1", b".5",
    b"1.", b"true", b"nul", b'"a\\u0000b"', b'"\\ud83d\\ude00"', b"[]", b'"\t"',
]  # fmt: skip
_HOLE = "\x00hole\x00"


def with_token(doc: dict[str, Any], field: str, token: bytes) -> bytes:
    return orjson.dumps({**doc, field: _HOLE}).replace(orjson.dumps(_HOLE), token)


def candidates(name: str) -> Iterator[bytes]:
    doc = base_instance(name)
    raw = orjson.dumps(doc)
    yield raw
    props, required = SCHEMAS[name]["properties"], set(SCHEMAS[name]["required"])
    for field, prop in props.items():
        for v in broken_values(prop):
            yield json.dumps({**doc, field: v}).encode()
            yield json.dumps({**doc, field: v}, ensure_ascii=False).encode()
        for token in TOKENS:
            yield with_token(doc, field, token)
        yield orjson.dumps({k: v for k, v in doc.items() if k != field})  # missing (required or not)
        # Every value of an enum with each other field missing or null: rules that depend on it (`if`/`then`).
        for value in _branch(prop).get("enum", ()):
            for other in props:
                if other != field:
                    yield orjson.dumps({k: v for k, v in {**doc, field: value}.items() if k != other})
                    yield orjson.dumps({**doc, field: value, other: None})
        # A duplicate key: the last one counts for both readers.
        yield raw[:-1] + b',"' + field.encode() + b'":' + orjson.dumps(doc[field]) + b"}"
        yield b'{"' + field.encode() + b'": "dup",' + raw[1:]
    yield orjson.dumps({**doc, "extra": 1})
    yield with_token(doc, "extra", b"NaN")
    yield orjson.dumps({k: v for k, v in doc.items() if k in required})  # only what is required
    yield from [b"", b"null", b"[]", b"[" + raw + b"]", raw[:-1], raw + b"x", raw[:-1] + b",}", b"\xef\xbb\xbf" + raw]
    yield raw.replace(b'"', b"'")
    yield b" \n\t" + raw + b"\r\n"


@pytest.mark.parametrize("name", NAMES)
def test_broken_instances_are_accepted_only_when_the_schema_allows_them(name: str) -> None:
    assert accepted(name, orjson.dumps(base_instance(name))), "the base instance must be valid"
    seen = disagreements = 0
    for raw in candidates(name):
        seen += 1
        dec, valid = accepted(name, raw), schema_valid(name, raw)
        assert valid or not dec, f"accepted but not schema-valid: {raw[:300]!r}"
        if strict_json(raw):
            assert dec == valid, f"decoder {'accepts' if dec else 'refuses'}, schema says {valid}: {raw[:300]!r}"
        elif valid:
            disagreements += 1  # not JSON to strict readers, yet valid once Python's json read it
    assert seen > 200
    if name != "dead_letter":  # every schema has a number or a string a NaN or a lone surrogate can replace
        assert disagreements > 0


@given(
    doc=st.sampled_from(NAMES).flatmap(lambda n: st.tuples(st.just(n), from_schema(SCHEMAS[n]))),
    field_and_value=st.tuples(st.integers(0, 50), st.sampled_from([None, True, "x", 1.5, -1, 2**63, 1e308, [], {}])),
)
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_random_breakages_of_generated_instances_agree(
    doc: tuple[str, dict[str, Any]], field_and_value: tuple[int, Any]
) -> None:
    name, instance = doc
    fields = sorted(SCHEMAS[name]["properties"])
    field = fields[field_and_value[0] % len(fields)]
    raw = json.dumps({**instance, field: field_and_value[1]}).encode()
    assert accepted(name, raw) == schema_valid(name, raw), raw[:300]


def test_the_inherent_exceptions() -> None:
    """Where the verdicts differ by design (see the module docstring); anything else is a bug."""
    doc = base_instance("feature_update")
    # `$` before a trailing newline: Python's re (jsonschema) matches, the Rust regex does not.
    newline_key = json.dumps({**doc, "source_offsets": {"0\n": 1}}).encode()
    assert strict_json(newline_key) and schema_valid("feature_update", newline_key)
    assert not accepted("feature_update", newline_key)
    # Not strict JSON: Python's json reads NaN, and a lone surrogate is a fine Python str.
    for token in (b"NaN", b'"\\ud800"'):
        field = "entity_key" if b'"' in token else "version"
        raw = with_token(doc, field, token)
        assert not strict_json(raw) and not accepted("feature_update", raw)
    assert schema_valid("feature_update", with_token(doc, "entity_key", b'"\\ud800"'))
    # The clock: a valid event time far ahead is valid by the schema, refused by a receiver.
    ahead = orjson.dumps({**doc, "event_time": MAX_EVENT_TIME_MS})
    assert schema_valid("feature_update", ahead)
    assert isinstance(DECODERS["feature_update"].decode_one(ahead, now_ms=T), Rejection)
