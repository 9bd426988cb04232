"""The feature transform DSL: row-level expressions over one event's fields.

Used in feature-group YAML for row features (`expr: "distance_km > 10"`), aggregated values
(`expr: distance_km * surge`), entity keys (`key: concat(city, ':', pickup_zone)`) and source
filters (`filter: "status == 'available'"`).

    >>> from processors.dsl import BOOL, FLOAT, STR, compile_expression
    >>> schema = {"distance_km": FLOAT, "surge": FLOAT, "status": STR}
    >>> compile_expression("distance_km * surge", schema).evaluate({"distance_km": 2.0, "surge": 1.5})
    3.0
    >>> compile_expression("status == 'available'", schema, expect=BOOL).matches({"status": None})
    False

Syntax — a safe subset of Python expressions, parsed with `ast.parse` and never evaluated:
literals (int, float, str, True/False, None), field names, `+ - * / // % **`, unary `- + not`,
`and or`, `== != < <= > >=` (chains allowed), `x in [c1, c2]` / `not in` against a literal
list/tuple/set of constants, `a if cond else b`, and calls of the functions below by name with
positional arguments. Attributes, subscripts, lambdas, comprehensions, keyword arguments, f-strings,
`is`, bit operators and calls of anything else are refused with the construct and its column.

Semantics:

* Nulls propagate as in SQL: an operator, comparison or function with a None input gives None —
  except `is_null(x)`; `coalesce(a, b, ...)` (first non-None); `if_else(c, a, b)` and
  `a if c else b` (only the taken branch is evaluated). `concat` propagates too: None if any
  argument is None (an entity key is never a silently truncated string; write
  `concat(city, ':', coalesce(zone, ''))` to skip a missing part).
* `and` / `or` are three-valued: False and None = False, True or None = True, otherwise None.
* A condition (`if_else`, `a if c else b`, a filter via `matches`) that is None counts as False.
* `/` always gives a float (int / int too); `//` and `%` follow Python (floor); `**` is a float
  power like SQL's POWER. Division or modulo by zero, overflow, and results that are not real
  numbers (`(-8) ** 0.5`) give None, never an exception: one bad event must not stop a stream.
* `sqrt` of a negative and `log` of a non-positive number give None; `exp` overflow gives None.
* A float-typed result whose value came from an int branch or argument is converted to float.
* `+` adds numbers or joins two strings; bool is not a number (`to_int(flag)` converts).
* Comparing a str with a number, `x == None`, `lower(distance_km)`, `city + 1` are compile-time
  type errors. Ordering (`<`) works on numbers and on strings; bools compare with == / != only.
* Time functions take UTC epoch milliseconds and an optional fixed offset in hours (may be
  fractional, e.g. 5.5); `day_of_week` is 0 = Monday; `date_str` is 'YYYY-MM-DD'.
* A missing field in a row reads as None. Values are trusted to match the schema (events are
  validated models); operands of fields typed `any` are checked at run time. A row the expression
  cannot evaluate raises `DslEvaluationError` (the processor sends that event to the dead-letter topic).

Evaluation: `compile_expression` builds nested closures once; `evaluate(row)` only calls them
(about 0.1 µs for a field, 0.15 µs for `a * b`, 0.2 µs for `a if c > 10 else 1.0`).
`evaluate_columns(columns, n)` computes whole columns with list comprehensions, same results.
A `CompiledExpression` pickles by recompiling from its text and the types of its fields.

Functions (see `FUNCTIONS[name].signature` and `.doc`): coalesce, is_null, if_else, lower, upper,
strip, length, concat, substr, contains, starts_with, ends_with, abs, round, floor, ceil, sqrt, log,
exp, least, greatest, clip, to_float, to_int, to_str, hour_of_day, minute_of_hour, day_of_week,
is_weekend, date_str, bucket.

Static checks against a schema (`schema_from_model(EventClass)` or a dict of `FieldType`) report
every problem at once: unknown fields and functions (with "did you mean"), arity, argument and
operand types, the result kind the caller requires (`expect=BOOL`), and syntax errors.
`check_expression` returns them as `DslProblem` records; `compile_expression` raises `DslError`.
"""

from processors.dsl.exceptions import DslError, DslEvaluationError, DslProblem
from processors.dsl.expression import CompiledExpression, Expect, check_expression, compile_expression
from processors.dsl.functions import FUNCTIONS, Function
from processors.dsl.types import ANY, BOOL, FLOAT, INT, NUMERIC, STR, FieldType, Kind, Schema, schema_from_model

__all__ = [
    "ANY",
    "BOOL",
    "FLOAT",
    "FUNCTIONS",
    "INT",
    "NUMERIC",
    "STR",
    "CompiledExpression",
    "DslError",
    "DslEvaluationError",
    "DslProblem",
    "Expect",
    "FieldType",
    "Function",
    "Kind",
    "Schema",
    "check_expression",
    "compile_expression",
    "schema_from_model",
]
