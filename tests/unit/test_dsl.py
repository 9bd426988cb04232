"""The feature transform DSL: syntax whitelist, static checks, every function, null semantics, both evaluation paths."""

from __future__ import annotations

import ast
import datetime as dt
import doctest
import enum
import importlib
import math
import pathlib
import pickle
from collections.abc import Mapping
from typing import Any, Literal, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import processors.dsl as dsl
from processors.dsl import (
    ANY,
    BOOL,
    FLOAT,
    FUNCTIONS,
    INT,
    NUMERIC,
    STR,
    CompiledExpression,
    DslError,
    DslEvaluationError,
    DslProblem,
    FieldType,
    Kind,
    check_expression,
    compile_expression,
    schema_from_model,
)
from processors.dsl.functions import Nulls
from processors.dsl.parser import MAX_DEPTH, MAX_LENGTH
from processors.numeric import bounded_number
from streams.events import DriverPing, TripRequested

SCHEMA: dict[str, FieldType] = {
    "distance_km": FLOAT,
    "surge": FLOAT,
    "city": STR,
    "pickup_zone": STR,
    "status": STR,
    "event_time": INT,
    "n": INT,
    "flag": BOOL,
    "tip": FLOAT.with_nullable(),
    "k": INT.with_nullable(),
    "note": STR.with_nullable(),
    "maybe": BOOL.with_nullable(),
    "maybe2": BOOL.with_nullable(),
    "anything": ANY,
}
TS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, a Tuesday


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def same_lists(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


def ev(text: str, **row: Any) -> Any:
    """Evaluate on one row, checking that the columnar path agrees."""
    expr = compile_expression(text, SCHEMA)
    value = expr.evaluate(row)
    columnar = expr.evaluate_columns({name: [v] for name, v in row.items()}, 1)
    assert same_lists(columnar, [value]), (text, columnar, value)
    return value


def problems(text: str, schema: Mapping[str, FieldType] | None = SCHEMA, **kwargs: Any) -> list[str]:
    return [str(p) for p in check_expression(text, schema, **kwargs)]


# --- public API ----------------------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    assert sorted(dsl.__all__) == sorted(
        [
            "ANY", "BOOL", "FLOAT", "FUNCTIONS", "INT", "NUMERIC", "STR", "CompiledExpression", "DslError",
            "DslEvaluationError", "DslProblem", "Expect", "FieldType", "Function", "Kind", "Schema",
            "check_expression", "compile_expression", "schema_from_model",
        ]
    )  # fmt: skip


def test_compiled_expression_records_text_fields_and_type() -> None:
    expr = compile_expression("distance_km * surge", SCHEMA)
    assert isinstance(expr, CompiledExpression)
    assert expr.text == "distance_km * surge"
    assert expr.fields == frozenset({"distance_km", "surge"})
    assert expr.result_type == FLOAT
    assert expr.evaluate_many([{"distance_km": 2.0, "surge": 1.5}, {"distance_km": 1.0, "surge": None}]) == [3.0, None]
    with pytest.raises(AttributeError):
        expr.text = "x"  # type: ignore[misc]


def test_a_bare_field_reads_the_row_and_a_missing_field_is_none() -> None:
    expr = compile_expression("distance_km", SCHEMA)
    assert expr.evaluate({"distance_km": 4.2}) == 4.2
    assert expr.evaluate({}) is None
    assert expr.evaluate_columns({}, 2) == [None, None]


def test_evaluation_never_parses_again(monkeypatch: pytest.MonkeyPatch) -> None:
    expr = compile_expression("if_else(distance_km > 10 and city in ['nyc'], surge * 2, -surge)", SCHEMA)

    def refuse(*args: object, **kwargs: object) -> None:
        msg = "evaluation must not parse or walk the tree"
        raise AssertionError(msg)

    monkeypatch.setattr(ast, "parse", refuse)
    monkeypatch.setattr("processors.dsl.checker.check", refuse)
    assert expr.evaluate({"distance_km": 12.0, "city": "nyc", "surge": 1.5}) == 3.0
    assert expr.evaluate_columns({"distance_km": [1.0], "city": ["sf"], "surge": [2.0]}, 1) == [-2.0]


def test_the_package_never_calls_eval_exec_or_compile() -> None:
    for path in pathlib.Path(dsl.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec", "compile", "__import__"}, path


def test_compiled_expressions_pickle_by_recompiling() -> None:
    expr = compile_expression("if_else(tip > 1, concat(city, ':', n), 'none')", SCHEMA)
    back = pickle.loads(pickle.dumps(expr))
    assert back == expr and back.field_types == {"city": STR, "n": INT, "tip": FLOAT.with_nullable()}
    row = {"tip": 2.0, "city": "nyc", "n": 3}
    assert back.evaluate(row) == expr.evaluate(row) == "nyc:3"
    assert hash(back) == hash(expr)  # usable in frozen records and sets


@pytest.mark.parametrize("module", sorted(p.stem for p in pathlib.Path(dsl.__file__).parent.glob("*.py")))
def test_docstring_examples_hold(module: str) -> None:
    name = "processors.dsl" if module == "__init__" else f"processors.dsl.{module}"
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


# --- functions -----------------------------------------------------------------------------------

FUNCTION_CASES: list[tuple[str, dict[str, Any], Any]] = [
    ("coalesce(tip, 1.5)", {"tip": None}, 1.5),
    ("coalesce(tip, 1.5)", {"tip": 2.0}, 2.0),
    ("coalesce(k, 0.5)", {"k": 3}, 3.0),  # float-typed: the int is converted
    ("coalesce(note, 'x')", {"note": None}, "x"),
    ("coalesce(tip, k)", {"tip": None, "k": None}, None),
    ("is_null(tip)", {"tip": None}, True),
    ("is_null(tip)", {"tip": 0.0}, False),
    ("if_else(flag, 'a', 'b')", {"flag": True}, "a"),
    ("if_else(flag, 'a', 'b')", {"flag": False}, "b"),
    ("if_else(maybe, 1, 2)", {"maybe": None}, 2),
    ("if_else(flag, 1, 2.5)", {"flag": True}, 1.0),
    ("lower(city)", {"city": "NYC"}, "nyc"),
    ("upper(city)", {"city": "nyc"}, "NYC"),
    ("strip(city)", {"city": "  a b \t"}, "a b"),
    ("length(city)", {"city": "héllo"}, 5),
    ("concat(city, ':', pickup_zone)", {"city": "nyc", "pickup_zone": "z1"}, "nyc:z1"),
    ("concat(city, n, flag, distance_km)", {"city": "a", "n": 3, "flag": True, "distance_km": 1.5}, "a3true1.5"),
    ("concat(city, note)", {"city": "a", "note": None}, None),
    ("concat(city, coalesce(note, ''))", {"city": "a", "note": None}, "a"),
    ("substr(city, 1, 2)", {"city": "abcdef"}, "bc"),
    ("substr(city, 2)", {"city": "abcdef"}, "cdef"),
    ("substr(city, -2, 1)", {"city": "abcdef"}, "e"),
    ("substr(city, -10, 2)", {"city": "abcdef"}, "ab"),
    ("substr(city, 10, 2)", {"city": "abcdef"}, ""),
    ("substr(city, 1, -1)", {"city": "abcdef"}, ""),
    ("contains(city, 'yc')", {"city": "nyc"}, True),
    ("contains(city, 'x')", {"city": "nyc"}, False),
    ("starts_with(city, 'ny')", {"city": "nyc"}, True),
    ("starts_with(city, 'yc')", {"city": "nyc"}, False),
    ("ends_with(city, 'yc')", {"city": "nyc"}, True),
    ("ends_with(city, 'ny')", {"city": "nyc"}, False),
    ("abs(n)", {"n": -3}, 3),
    ("abs(distance_km)", {"distance_km": -2.5}, 2.5),
    ("round(distance_km, 1)", {"distance_km": 2.26}, 2.3),
    ("round(distance_km)", {"distance_km": 2.5}, 2.0),  # half to even, stays a float
    ("round(distance_km)", {"distance_km": 3.5}, 4.0),
    ("round(n, -1)", {"n": 17}, 20),
    ("round(n)", {"n": 7}, 7),
    ("floor(distance_km)", {"distance_km": -2.5}, -3),
    ("floor(n)", {"n": 4}, 4),
    ("floor(distance_km)", {"distance_km": math.inf}, None),
    ("ceil(distance_km)", {"distance_km": 2.1}, 3),
    ("ceil(distance_km)", {"distance_km": math.nan}, None),
    ("sqrt(distance_km)", {"distance_km": 9.0}, 3.0),
    ("sqrt(n)", {"n": 4}, 2.0),
    ("sqrt(distance_km)", {"distance_km": 0.0}, 0.0),
    ("sqrt(distance_km)", {"distance_km": -1.0}, None),
    ("log(distance_km)", {"distance_km": math.e}, 1.0),
    ("log(distance_km)", {"distance_km": 0.0}, None),
    ("log(n)", {"n": -1}, None),
    ("exp(distance_km)", {"distance_km": 0.0}, 1.0),
    ("exp(distance_km)", {"distance_km": 1000.0}, None),
    ("least(n, distance_km, 10)", {"n": 3, "distance_km": 2.5}, 2.5),
    ("greatest(n, distance_km)", {"n": 3, "distance_km": 2.5}, 3.0),  # float-typed: converted
    ("least(n, 10)", {"n": 3}, 3),
    ("least(city, pickup_zone)", {"city": "b", "pickup_zone": "a"}, "a"),
    ("greatest(n, k)", {"n": 3, "k": None}, None),
    ("clip(distance_km, 0, 10)", {"distance_km": 12.5}, 10.0),
    ("clip(n, 0, 10)", {"n": -5}, 0),
    ("clip(n, 10, 0)", {"n": 5}, 0),  # lo > hi: hi, as numpy.clip
    ("to_float(n)", {"n": 3}, 3.0),
    ("to_float(city)", {"city": "2.5"}, 2.5),
    ("to_float(city)", {"city": "abc"}, None),
    ("to_float(flag)", {"flag": True}, 1.0),
    ("to_int(distance_km)", {"distance_km": -2.7}, -2),
    ("to_int(city)", {"city": "42"}, 42),
    ("to_int(city)", {"city": "3.7"}, 3),
    ("to_int(city)", {"city": "x"}, None),
    ("to_int(flag)", {"flag": True}, 1),
    ("to_int(distance_km)", {"distance_km": math.inf}, None),
    ("to_str(n)", {"n": 3}, "3"),
    ("to_str(flag)", {"flag": False}, "false"),
    ("to_str(distance_km)", {"distance_km": 1.5}, "1.5"),
    ("hour_of_day(event_time)", {"event_time": TS}, 22),
    ("hour_of_day(event_time, 2)", {"event_time": TS}, 0),
    ("hour_of_day(event_time, -5.5)", {"event_time": TS}, 16),
    ("minute_of_hour(event_time)", {"event_time": TS}, 13),
    ("minute_of_hour(event_time, 5.5)", {"event_time": TS}, 43),
    ("day_of_week(event_time)", {"event_time": TS}, 1),
    ("day_of_week(event_time, 2)", {"event_time": TS}, 2),
    ("is_weekend(event_time)", {"event_time": TS}, False),
    ("is_weekend(event_time)", {"event_time": TS + 4 * 86_400_000}, True),
    ("date_str(event_time)", {"event_time": TS}, "2023-11-14"),
    ("date_str(event_time, 2)", {"event_time": TS}, "2023-11-15"),
    ("date_str(event_time)", {"event_time": 10**18}, None),
    ("date_str(event_time)", {"event_time": -1}, "1969-12-31"),
    ("bucket(distance_km, 1, 5, 10)", {"distance_km": 0.5}, 0),
    ("bucket(distance_km, 1, 5, 10)", {"distance_km": 1.0}, 1),
    ("bucket(distance_km, 1, 5, 10)", {"distance_km": 7.0}, 2),
    ("bucket(distance_km, 1, 5, 10)", {"distance_km": 12.0}, 3),
    ("bucket(n, -1.5, 0)", {"n": -1}, 1),
]


@pytest.mark.parametrize(("text", "row", "expected"), FUNCTION_CASES)
def test_function(text: str, row: dict[str, Any], expected: Any) -> None:
    assert same(ev(text, **row), expected), ev(text, **row)


def test_every_function_has_cases() -> None:
    called = {text.split("(")[0] for text, _, _ in FUNCTION_CASES}
    assert set(FUNCTIONS) <= called, set(FUNCTIONS) - called


def test_function_signatures_read_well() -> None:
    assert FUNCTIONS["substr"].signature == "substr(s: str, start: int[, length: int]) -> str"
    assert FUNCTIONS["bucket"].signature == "bucket(x: number, edge: number, ...) -> int"
    assert all(f.doc for f in FUNCTIONS.values())


# --- null semantics ------------------------------------------------------------------------------

# A valid literal argument list per null-propagating function; each argument in turn is replaced by None.
SAMPLE_ARGS: dict[str, list[str]] = {
    "lower": ["'A'"],
    "upper": ["'a'"],
    "strip": ["' a '"],
    "length": ["'abc'"],
    "concat": ["'a'", "1", "True"],
    "substr": ["'abc'", "1", "1"],
    "contains": ["'abc'", "'b'"],
    "starts_with": ["'abc'", "'a'"],
    "ends_with": ["'abc'", "'c'"],
    "abs": ["-1"],
    "round": ["1.25", "1"],
    "floor": ["1.5"],
    "ceil": ["1.5"],
    "sqrt": ["4"],
    "log": ["1"],
    "exp": ["0"],
    "least": ["1", "2.5", "3"],
    "greatest": ["1", "2.5"],
    "clip": ["5", "0", "3"],
    "to_float": ["'1.5'"],
    "to_int": ["1.5"],
    "to_str": ["1"],
    "hour_of_day": [str(TS), "2"],
    "minute_of_hour": [str(TS), "2"],
    "day_of_week": [str(TS), "2"],
    "is_weekend": [str(TS), "2"],
    "date_str": [str(TS), "2"],
    "bucket": ["1.5", "1", "2"],
}


def null_cases() -> list[str]:
    cases = []
    for name, args in SAMPLE_ARGS.items():
        for i in range(len(args)):
            if FUNCTIONS[name].param_for(i).constant:
                continue
            cases.append(f"{name}({', '.join('None' if j == i else a for j, a in enumerate(args))})")
    return cases


def test_every_null_propagating_function_has_samples() -> None:
    propagating = {name for name, f in FUNCTIONS.items() if f.nulls is Nulls.PROPAGATE}
    assert set(SAMPLE_ARGS) == propagating
    for name, args in SAMPLE_ARGS.items():
        assert ev(f"{name}({', '.join(args)})") is not None, name


@pytest.mark.parametrize("text", null_cases())
def test_functions_propagate_null(text: str) -> None:
    assert ev(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "tip + 1", "1 + tip", "tip - surge", "tip * 2", "tip / 2", "tip // 2", "tip % 2", "tip ** 2", "2 ** tip",
        "-tip", "+tip", "tip > 1", "1 <= tip", "tip == 1.0", "tip != 1.0", "k < n < 5", "note in ['a']",
        "note not in ['a']", "not maybe", "note + 'x'", "lower(note)", "tip * surge + distance_km",
    ],
)  # fmt: skip
def test_operators_propagate_null(text: str) -> None:
    assert ev(text, tip=None, k=None, note=None, maybe=None, surge=1.0, distance_km=1.0, n=3) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("coalesce(None, 1)", 1),
        ("coalesce(None, None, 'a')", "a"),
        ("is_null(None)", True),
        ("if_else(True, 1, None)", 1),
        ("if_else(None, 1, 2)", 2),
        ("1 if True else None", 1),
        ("1 if None else 2", 2),
        ("False and None", False),
        ("True or None", True),
    ],
)
def test_null_safe_constructs(text: str, expected: Any) -> None:
    assert same(ev(text), expected)


KLEENE = [True, False, None]


def kleene_and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def kleene_or(a: bool | None, b: bool | None) -> bool | None:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


@pytest.mark.parametrize("a", KLEENE)
@pytest.mark.parametrize("b", KLEENE)
def test_three_valued_logic(a: bool | None, b: bool | None) -> None:
    assert ev("maybe and maybe2", maybe=a, maybe2=b) is kleene_and(a, b)
    assert ev("maybe or maybe2", maybe=a, maybe2=b) is kleene_or(a, b)
    assert ev("not maybe", maybe=a) is (None if a is None else not a)
    for c in KLEENE:
        assert ev("maybe and maybe2 and flag", maybe=a, maybe2=b, flag=c) is kleene_and(kleene_and(a, b), c)
        assert ev("maybe or maybe2 or flag", maybe=a, maybe2=b, flag=c) is kleene_or(kleene_or(a, b), c)


def test_a_none_condition_counts_as_false() -> None:
    expr = compile_expression("distance_km > 10", SCHEMA, expect=BOOL)
    assert expr.matches({"distance_km": 11.0}) is True
    assert expr.matches({"distance_km": 9.0}) is False
    assert expr.matches({"distance_km": None}) is False
    assert ev("'y' if maybe else 'n'", maybe=None) == "n"


@pytest.mark.parametrize(
    "text",
    ["n / 0", "n // 0", "n % 0", "distance_km / 0", "distance_km / 0.0", "distance_km // 0.0", "distance_km % 0.0",
     "0 ** -1", "(-8) ** 0.5", "10.0 ** 400", "n / (n - n)"],
)  # fmt: skip
def test_division_by_zero_and_non_real_results_are_none(text: str) -> None:
    assert ev(text, n=3, distance_km=1.5) is None


def test_arithmetic_types() -> None:
    assert same(ev("7 / 2"), 3.5)
    assert same(ev("n / 2", n=4), 2.0)
    assert same(ev("n // 2", n=7), 3)
    assert same(ev("n % 3", n=-7), 2)  # Python's floor modulo
    assert same(ev("n ** 2", n=3), 9.0)  # a float power, as SQL's POWER
    assert same(ev("n * 2 + 1", n=3), 7)
    assert same(ev("n + distance_km", n=1, distance_km=0.5), 1.5)
    assert same(ev("city + '-' + pickup_zone", city="a", pickup_zone="b"), "a-b")
    assert same(ev("-n", n=3), -3)
    assert same(ev("- -n", n=3), 3)
    assert same(ev("2 ** -1"), 0.5)


def test_comparisons_membership_and_chains() -> None:
    assert ev("status == 'available'", status="available") is True
    assert ev("city < pickup_zone", city="a", pickup_zone="b") is True
    assert ev("1 < n <= 5", n=5) is True
    assert ev("1 < n <= 5", n=6) is False
    assert ev("0 < n < distance_km < 10", n=1, distance_km=20.0) is False
    assert ev("status in ['a', 'b']", status="b") is True
    assert ev("status not in ('a', 'b')", status="c") is True
    assert ev("n in {1, -2}", n=-2) is True
    assert ev("n in []", n=1) is False
    assert ev("flag == True", flag=True) is True
    assert ev("n == distance_km", n=2, distance_km=2.0) is True


# --- result types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("distance_km * surge", FLOAT),
        ("n * 2", INT),
        ("n / 2", FLOAT.with_nullable()),  # may divide by zero
        ("tip * 2", FLOAT.with_nullable()),
        ("coalesce(tip, 0.0)", FLOAT),
        ("coalesce(tip, k)", FLOAT.with_nullable()),
        ("is_null(tip)", BOOL),
        ("distance_km > 10", BOOL),
        ("tip > 10", BOOL.with_nullable()),
        ("n if flag else 2.5", FLOAT),
        ("concat(city, ':', n)", STR),
        ("hour_of_day(event_time)", INT),
        ("sqrt(distance_km)", FLOAT.with_nullable()),
        ("floor(n)", INT),
        ("floor(distance_km)", INT.with_nullable()),
        ("anything + 1", ANY),
        ("if_else(maybe, 'a', note)", STR.with_nullable()),
    ],
)
def test_result_types(text: str, expected: FieldType) -> None:
    assert compile_expression(text, SCHEMA).result_type == expected


def test_expect_constrains_the_result_kind() -> None:
    assert problems("distance_km > 10", expect=BOOL) == []
    assert problems("tip > 10", expect=BOOL) == []  # nullable: None counts as False
    assert problems("distance_km", expect=BOOL) == ["at column 1: expected a bool result; got float"]
    assert problems("city", expect=NUMERIC) == ["at column 1: expected a float or int result; got str"]
    assert problems("n", expect=FLOAT) == []  # an int is a valid float
    assert problems("anything", expect=BOOL) == []  # checked at run time only
    assert problems("concat(city, n)", expect=[STR, INT]) == []
    with pytest.raises(DslError, match="expected a bool result; got float"):
        compile_expression("distance_km * surge", SCHEMA, expect=BOOL)


# --- static checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lower(distance_km)", "argument 1 (s) of lower(s: str) -> str must be str; got float (distance_km)"),
        ("city + 1", "operator '+' expects two numbers or two strings; got str (city) and int (1)"),
        ("hour_of_day(city)", "must be a number; got str (city)"),
        ("city > 1", "'>' compares two numbers or two strings; got str (city) and int (1)"),
        ("city == 1", "'==' compares values of the same type"),
        ("flag + 1", "use to_int(flag)"),
        ("flag < True", "'<' compares two numbers or two strings"),
        ("not city", "'not' expects a bool; got str (city)"),
        ("-city", "unary '-' expects a number"),
        ("distance_km and flag", "'and' expects bool operands; got float (distance_km)"),
        ("flag or 0.0", "use coalesce(x, default)"),
        ("1 if distance_km else 2", "the condition of 'if ... else' must be bool"),
        ("1 if flag else 'a'", "branches of 'if ... else' have different types: int and str"),
        ("if_else(flag, 1, 'a')", "arguments must have compatible types; got int, str"),
        ("if_else(n, 1, 2)", "argument 1 (cond) of if_else"),
        ("least(city, n)", "arguments must have compatible types"),
        ("n in ['a']", "got int (n) with a list holding str"),
        ("city in [None]", "never matches; use is_null(x)"),
        ("city == None", "use is_null(x)"),
        ("substr(city, 1.5)", "argument 2 (start) of substr(s: str, start: int[, length: int]) -> str must be int"),
        ("round(distance_km, 1.5)", "must be int"),
        ("bucket(distance_km, surge)", "argument 2 (edge) of bucket(x: number, edge: number, ...) -> int must be"),
        ("bucket(distance_km, 5, 1)", "bucket edges must be strictly ascending; got 5, 1"),
        ("lower(city, city)", "lower() takes 1 argument (lower(s: str) -> str); got 2"),
        ("coalesce()", "coalesce() takes at least 1 argument"),
        ("substr(city)", "substr() takes 2 to 3 arguments"),
    ],
)  # fmt: skip
def test_type_errors(text: str, fragment: str) -> None:
    found = problems(text)
    assert len(found) == 1, found
    assert fragment in found[0], found
    with pytest.raises(DslError):
        compile_expression(text, SCHEMA)


def test_unknown_field_names_suggestion_and_fields() -> None:
    [message] = problems("distance_km > 10 and distnce_km < 5")
    assert message.startswith("at column 22: unknown field 'distnce_km'; did you mean 'distance_km'? (fields: ")
    assert "city, distance_km, event_time" in message


def test_unknown_function_suggestions() -> None:
    assert problems("lowr(city)")[0].startswith(
        "at column 1: unknown function 'lowr'; did you mean 'lower'? (functions: "
    )
    assert "did you mean 'greatest'?" in problems("max(n, k)")[0]
    assert "did you mean 'length'?" in problems("len(city)")[0]
    assert "use the '**' operator" in problems("pow(n, 2)")[0]
    assert "'city' is a field, not a function" in problems("city(1)")[0]
    assert "lower is a function: call it as lower(s: str) -> str" in problems("lower")[0]


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(DslError) as info:
        compile_expression("distnce_km * surg", SCHEMA)
    error = info.value
    assert [(p.column, p.message.split(";")[0]) for p in error.problems] == [
        (1, "unknown field 'distnce_km'"),
        (14, "unknown field 'surg'"),
    ]
    assert all(p.expression == "distnce_km * surg" for p in error.problems)
    assert str(error).startswith("2 problems in expression 'distnce_km * surg':\n  at column 1: unknown field")
    mixed = problems("lower(distance_km) + a.b + nope(1) + substr(city)")
    assert len(mixed) == 4, mixed


def test_one_mistake_does_not_cascade() -> None:
    assert len(problems("lower(cty) == 'nyc'")) == 1
    assert len(problems("(distnce_km + 1) * 2 > 3")) == 1


def test_check_expression_returns_records_and_never_raises() -> None:
    found = check_expression("a.b", SCHEMA)
    assert found == [DslProblem("a.b", "attribute access 'a.b' is not allowed; "
                                "expected fields, literals, operators and function calls", 1)]  # fmt: skip
    assert check_expression("distance_km * surge", SCHEMA) == []


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=40), st.text(alphabet="abnk_019 +-*/%()<>=!,.'\"[]{}:;~&|@ifelsnotandor\n", max_size=40))
)
def test_check_expression_never_raises_on_any_text(text: str) -> None:
    found = check_expression(text, SCHEMA)
    assert all(isinstance(p, DslProblem) and p.column >= 1 and p.line >= 1 for p in found)


def test_no_schema_accepts_any_field_typed_any() -> None:
    expr = compile_expression("a * b + c", None)
    assert expr.result_type == ANY
    assert expr.evaluate({"a": 2, "b": 3, "c": 1}) == 7
    assert problems("lower(a) + b", None) == []


# --- forbidden syntax ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("().__class__", "attribute access '().__class__' is not allowed"),
        ("[x for x in y]", "list comprehension"),
        ("{x for x in y}", "set comprehension"),
        ("(x for x in y)", "generator expression"),
        ("{x: 1 for x in y}", "dict comprehension"),
        ("lambda: 1", "lambda"),
        ("a.b", "attribute access 'a.b'"),
        ("a[0]", "subscript 'a[0]'"),
        ("a[1:2]", "subscript"),
        ("lower(x=1)", "keyword argument 'x=' is not allowed; pass arguments by position"),
        ("lower(**d)", "keyword argument '**'"),
        ("lower(*a)", "starred expression"),
        ("(y := 1)", "assignment expression (:=)"),
        ("f'{a}'", "f-string"),
        ("{1: 2}", "dict literal"),
        ("[1, 2]", "a list [1, 2] is only allowed on the right of 'in'"),
        ("(1, 2)", "a tuple"),
        ("a is None", "'is' comparisons are not allowed; use is_null(x)"),
        ("a is not None", "'is' comparisons"),
        ("a & b", "operator '&' is not allowed; use 'and'"),
        ("a | b", "operator '|'"),
        ("a ^ b", "operator '^'"),
        ("a << 1", "operator '<<'"),
        ("~a", "operator '~'"),
        ("a @ b", "operator '@'"),
        ("b'x'", "bytes literal"),
        ("1j", "complex number"),
        ("...", "literal ... is not allowed"),
        ("a in b", "the right side of 'in' must be a literal list of constants"),
        ("a in 'abc'", "use contains(s, sub)"),
        ("a in [b]", "the list after 'in' may hold only literal constants; got 'b'"),
        ("(lambda: 1)()", "only functions called by name are allowed"),
        ("a.upper()", "got a call of attribute access 'a.upper'"),
        ("lower(a)(b)", "got a call of an expression"),
        ("await a", "await"),
    ],
)
def test_forbidden_constructs(text: str, fragment: str) -> None:
    found = problems(text, None)
    assert any(fragment in p for p in found), found
    with pytest.raises(DslError):
        compile_expression(text, None)


def test_f_call_with_keyword_reports_both_problems() -> None:
    found = problems("f(x=1)", None)
    assert [p.split(":")[0] for p in found] == ["at column 1", "at column 3"]
    assert "unknown function 'f'" in found[0] and "keyword argument 'x='" in found[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("distance_km >", "at column 14: invalid syntax"),
        ("(distance_km + 1", "at column 1: invalid syntax: '(' was never closed"),
        ("distance_km surge", "at column 13: invalid syntax: not a valid expression"),
        ("n = 1", "at column 3: invalid syntax: not a valid expression; compare with '=='"),
        ("", "at column 1: empty expression"),
        ("   ", "at column 1: empty expression"),
        ("  distance_km +", "at column 16: invalid syntax"),
        ("distance_km +\n surge", "at column 14: invalid syntax"),  # a line break only inside parentheses
        ("(distance_km +\n  surge +)", "at line 2, column 10: invalid syntax"),
    ],
)
def test_syntax_errors_carry_the_column(text: str, expected: str) -> None:
    found = problems(text)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_columns_count_characters_not_bytes() -> None:
    assert problems("concat('héllo', cty)")[0].startswith("at column 17: unknown field 'cty'")
    assert problems("  lower(cty)")[0].startswith("at column 9: unknown field 'cty'")
    assert problems("(distance_km +\n cty)")[0].startswith("at line 2, column 2: unknown field 'cty'")
    assert problems("\n  lower(cty)")[0].startswith("at line 2, column 9: unknown field 'cty'")
    assert problems("\n  distance_km +")[0].startswith("at line 2, column 16: invalid syntax")


def test_deep_and_long_expressions_are_refused_not_crashing() -> None:
    deep = " + ".join(["n"] * (MAX_DEPTH + 50))
    assert any("nested too deeply" in p for p in problems(deep))
    assert any("nested too deeply" in p for p in problems("-" * 300 + "n"))
    assert problems("(" * 300 + "n" + ")" * 300) == ["at column 201: invalid syntax: too many nested parentheses"]
    assert problems("n" * (MAX_LENGTH + 1)) == [f"at column 1: expression too long: {MAX_LENGTH + 1} characters, "
                                                 f"at most {MAX_LENGTH}"]  # fmt: skip
    assert problems(" + ".join(["n"] * 60)) == []


def test_problem_formatting() -> None:
    assert str(DslProblem("x", "boom", 3)) == "at column 3: boom"
    assert str(DslProblem("x\ny", "boom", 3, line=2)) == "at line 2, column 3: boom"
    assert str(DslError("x", [DslProblem("x", "boom", 1)])) == "1 problem in expression 'x':\n  at column 1: boom"


# --- run-time errors: rows that violate the schema -----------------------------------------------


def test_a_row_violating_the_schema_raises_a_dsl_evaluation_error() -> None:
    expr = compile_expression("lower(city)", SCHEMA)
    with pytest.raises(DslEvaluationError, match=r"expression 'lower\(city\)' cannot be evaluated on this row"):
        expr.evaluate({"city": 5})
    with pytest.raises(DslEvaluationError, match=r"\(row 1\)") as info:
        expr.evaluate_many([{"city": "A"}, {"city": 5}])
    assert info.value.index == 1
    with pytest.raises(DslEvaluationError, match=r"\(row 2\)"):
        expr.evaluate_columns({"city": ["A", "B", 5]}, 3)


def test_fields_typed_any_are_checked_at_run_time() -> None:
    expr = compile_expression("anything * 3", SCHEMA)
    assert expr.evaluate({"anything": 2}) == 6
    with pytest.raises(DslEvaluationError, match="operator '\\*' got str and int; expected numbers"):
        expr.evaluate({"anything": "ab"})  # never a repeated string
    assert ev("anything + 'x'", anything="a") == "ax"
    with pytest.raises(DslEvaluationError):
        compile_expression("anything < 1", SCHEMA).evaluate({"anything": "a"})


def test_columns_fall_back_to_rows_for_a_bad_value_in_an_untaken_branch() -> None:
    expr = compile_expression("if_else(flag, lower(anything), 'x')", SCHEMA)
    columns: dict[str, list[Any]] = {"flag": [True, False], "anything": ["A", 5]}
    rows: list[dict[str, Any]] = [{"flag": True, "anything": "A"}, {"flag": False, "anything": 5}]
    assert expr.evaluate_many(rows) == ["a", "x"]
    assert expr.evaluate_columns(columns, 2) == ["a", "x"]


def test_evaluate_columns_checks_lengths() -> None:
    expr = compile_expression("distance_km * surge", SCHEMA)
    with pytest.raises(ValueError, match=r"column 'surge' has 1 values; expected n=2"):
        expr.evaluate_columns({"distance_km": [1.0, 2.0], "surge": [1.0]}, 2)
    assert expr.evaluate_columns({"distance_km": [1.0, 2.0]}, 2) == [None, None]


# --- time functions against datetime -------------------------------------------------------------

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MIN_TS = -62_135_596_800_000 + 2 * 86_400_000  # year 1, with a margin for the offset
MAX_TS = 253_402_300_799_999 - 2 * 86_400_000


@settings(max_examples=500, deadline=None)
@given(ts=st.integers(MIN_TS, MAX_TS), quarters=st.integers(-48, 56))
def test_time_functions_agree_with_datetime(ts: int, quarters: int) -> None:
    offset = quarters / 4
    local = (EPOCH + dt.timedelta(milliseconds=ts)).astimezone(dt.timezone(dt.timedelta(hours=offset)))
    row = {"event_time": ts, "tip": offset}
    expected = {
        "hour_of_day": local.hour,
        "minute_of_hour": local.minute,
        "day_of_week": local.weekday(),
        "is_weekend": local.weekday() >= 5,
        "date_str": local.date().isoformat(),
    }
    for name, value in expected.items():
        assert ev(f"{name}(event_time, tip)", **row) == value, name
        if quarters == 0:
            assert ev(f"{name}(event_time)", **row) == value, name


# --- property tests: arithmetic trees against a reference evaluator, rows against columns ---------

NUMERIC_SCHEMA = {"x": INT.with_nullable(), "y": FLOAT.with_nullable(), "z": FLOAT.with_nullable()}
OPS = ["+", "-", "*", "/", "//", "%", "**"]

Tree = tuple[Any, ...]


def num_trees() -> st.SearchStrategy[Tree]:
    leaves = st.one_of(
        st.sampled_from(["x", "y", "z"]).map(lambda name: ("field", name)),
        st.integers(-5, 5).map(lambda v: ("const", v)),
        st.floats(-10, 10, allow_nan=False).map(lambda v: ("const", v)),
        st.just(("const", None)),
    )
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.tuples(st.just("bin"), st.sampled_from(OPS), kids, kids),
            st.tuples(st.just("neg"), kids),
        ),
        max_leaves=10,
    )


def render(tree: Tree) -> str:
    match tree:
        case ("field", name):
            return str(name)
        case ("const", value):
            return f"({value!r})"
        case ("neg", operand):
            return f"(-{render(operand)})"
        case ("bin", op, left, right):
            return f"({render(left)} {op} {render(right)})"
    raise AssertionError(tree)


def reference(tree: Tree, row: Mapping[str, Any]) -> Any:
    """Python's own arithmetic with the documented rules: None in → None out; zero division,
    overflow and non-real powers → None; `**` is a float power."""
    match tree:
        case ("field", name):
            return row.get(name)
        case ("const", value):
            return value
        case ("neg", operand):
            v = reference(operand, row)
            return None if v is None else -v
        case ("bin", op, left, right):
            a, b = reference(left, row), reference(right, row)
            if a is None or b is None:
                return None
            try:
                if op == "**":
                    return math.pow(a, b)
                return {"+": a + b, "-": a - b, "*": a * b}[op] if op in "+-*" else _divide(op, a, b)
            except (ArithmeticError, ValueError):
                return None
    raise AssertionError(tree)


def _divide(op: str, a: Any, b: Any) -> Any:
    return a / b if op == "/" else a // b if op == "//" else a % b


rows_strategy = st.fixed_dictionaries(
    {
        "x": st.one_of(st.none(), st.integers(-1000, 1000)),
        "y": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        "z": st.one_of(st.none(), st.floats(-100, 100)),
    }
)


@settings(max_examples=400, deadline=None)
@given(tree=num_trees(), rows=st.lists(rows_strategy, min_size=1, max_size=5))
def test_arithmetic_trees_match_the_reference(tree: Tree, rows: list[dict[str, Any]]) -> None:
    text = render(tree)
    expr = compile_expression(text, NUMERIC_SCHEMA)
    for row in rows:
        # The result follows the one rule for numbers (processors/numeric.py): non-finite or beyond ±2**53 is null.
        assert same(expr.evaluate(row), bounded_number(reference(tree, row))), (text, row)
    columns = {name: [row[name] for row in rows] for name in NUMERIC_SCHEMA}
    assert same_lists(expr.evaluate_columns(columns, len(rows)), expr.evaluate_many(rows)), text


BOOL_SCHEMA = {**NUMERIC_SCHEMA, "p": BOOL.with_nullable(), "q": BOOL.with_nullable()}


def always_none(tree: Tree) -> bool:
    """Typed as the literal None: `None`, `-None`, `None + None`."""
    match tree:
        case ("const", None):
            return True
        case ("neg", operand):
            return always_none(operand)
        case ("bin", _, left, right):
            return always_none(left) and always_none(right)
    return False


def bool_trees() -> st.SearchStrategy[Tree]:
    operand = num_trees().filter(lambda tree: not always_none(tree))  # `None < 0` is a compile-time error
    comparison = st.tuples(
        st.just("cmp"), st.sampled_from(["<", "<=", "==", "!=", ">", ">="]), operand, st.integers(-3, 3)
    )
    leaves = st.one_of(
        st.sampled_from(["p", "q"]).map(lambda name: ("field", name)),
        st.sampled_from([True, False, None]).map(lambda v: ("const", v)),
        comparison,
    )
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.tuples(st.sampled_from(["and", "or"]), st.lists(kids, min_size=2, max_size=3)),
            st.tuples(st.just("not"), kids),
            st.tuples(st.sampled_from(["ifexp", "if_else"]), kids, kids, kids),
            st.tuples(st.just("coalesce"), st.lists(kids, min_size=1, max_size=3)),
            st.tuples(st.just("is_null"), kids),
        ),
        max_leaves=8,
    )


def render_bool(tree: Tree) -> str:
    match tree:
        case ("cmp", op, left, value):
            return f"({render(left)} {op} {value})"
        case ("and" | "or" as op, operands):
            return "(" + f" {op} ".join(render_bool(o) for o in operands) + ")"
        case ("not", operand):
            return f"(not {render_bool(operand)})"
        case ("ifexp", cond, then, otherwise):
            return f"({render_bool(then)} if {render_bool(cond)} else {render_bool(otherwise)})"
        case ("if_else", cond, then, otherwise):
            return f"if_else({render_bool(cond)}, {render_bool(then)}, {render_bool(otherwise)})"
        case ("coalesce", operands):
            return f"coalesce({', '.join(render_bool(o) for o in operands)})"
        case ("is_null", operand):
            return f"is_null({render_bool(operand)})"
    return render(tree)


def reference_bool(tree: Tree, row: Mapping[str, Any]) -> Any:
    match tree:
        case ("cmp", op, left, value):
            a = reference(left, row)
            ops = {"<": a < value, "<=": a <= value, "==": a == value} if a is not None else {}
            if a is None:
                return None
            return ops.get(op, {"!=": a != value, ">": a > value, ">=": a >= value}.get(op))
        case ("and", operands):
            result: Any = True
            for o in operands:
                result = kleene_and(result, reference_bool(o, row))
            return result
        case ("or", operands):
            result = False
            for o in operands:
                result = kleene_or(result, reference_bool(o, row))
            return result
        case ("not", operand):
            v = reference_bool(operand, row)
            return None if v is None else not v
        case ("ifexp" | "if_else", cond, then, otherwise):
            return reference_bool(then if reference_bool(cond, row) is True else otherwise, row)
        case ("coalesce", operands):
            return next((v for v in (reference_bool(o, row) for o in operands) if v is not None), None)
        case ("is_null", operand):
            return reference_bool(operand, row) is None
    return reference(tree, row)


bool_rows = st.fixed_dictionaries(
    {
        "x": st.one_of(st.none(), st.integers(-5, 5)),
        "y": st.one_of(st.none(), st.floats(-5, 5)),
        "z": st.one_of(st.none(), st.floats(allow_nan=True)),
        "p": st.sampled_from([True, False, None]),
        "q": st.sampled_from([True, False, None]),
    }
)


@settings(max_examples=400, deadline=None)
@given(tree=bool_trees(), rows=st.lists(bool_rows, min_size=1, max_size=5))
def test_logic_trees_match_the_reference_and_columns_match_rows(tree: Tree, rows: list[dict[str, Any]]) -> None:
    text = render_bool(tree)
    expr = compile_expression(text, BOOL_SCHEMA)
    for row in rows:
        assert same(expr.evaluate(row), reference_bool(tree, row)), (text, row)
    columns = {name: [row[name] for row in rows] for name in BOOL_SCHEMA}
    assert same_lists(expr.evaluate_columns(columns, len(rows)), expr.evaluate_many(rows)), text


# --- schemas from pydantic models ----------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Sample(BaseModel):
    count: int
    ratio: float
    name: str
    ok: bool
    status: Literal["available", "on_trip"]
    level: Literal[1, 2]
    tip: float | None = None
    note: Optional[str] = None  # noqa: UP045 — the old spelling must map too
    either: int | float = 0
    color: Color = Color.RED
    tags: list[str] = []
    mixed: int | str = 0


def test_schema_from_model() -> None:
    assert schema_from_model(Sample) == {
        "count": INT,
        "ratio": FLOAT,
        "name": STR,
        "ok": BOOL,
        "status": STR,
        "level": INT,
        "tip": FLOAT.with_nullable(),
        "note": STR.with_nullable(),
        "either": FLOAT,
        "color": STR,
        "tags": ANY,
        "mixed": ANY,
    }
    assert str(FLOAT.with_nullable()) == "float | None" and str(ANY) == "any"
    assert FieldType(Kind.ANY).nullable  # unknown values may always be None


def test_schema_of_the_domain_events() -> None:
    trips = schema_from_model(TripRequested)
    assert trips["distance_km"] == FLOAT and trips["pickup_zone"] == STR and trips["event_time"] == INT
    assert trips["event_type"] == STR
    assert schema_from_model(DriverPing)["status"] == STR
    key = compile_expression("concat(city, ':', pickup_zone)", trips, expect=STR)
    assert key.evaluate({"city": "nyc", "pickup_zone": "z7"}) == "nyc:z7"
    available = compile_expression("status == 'available'", schema_from_model(DriverPing), expect=BOOL)
    assert available.matches({"status": "available"}) and not available.matches({"status": "offline"})
