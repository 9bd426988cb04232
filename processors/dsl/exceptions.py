"""Errors of the DSL.

DslError                 an expression does not compile: carries every `DslProblem` found
DslEvaluationError       a row that violates the schema the expression was compiled against

Problems are records, not exceptions, so a caller validating many expressions (the feature-group
YAML validator) can collect them all with `check_expression` and prefix them with file and feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processors.exceptions import ProcessorsError

__all__ = ["DslError", "DslEvaluationError", "DslProblem"]


@dataclass(frozen=True, slots=True)
class DslProblem:
    """One problem in an expression, at a 1-based column (and line, for multi-line text).

    >>> str(DslProblem("a +", "unexpected end of expression", 4))
    'at column 4: unexpected end of expression'
    """

    expression: str
    message: str
    column: int
    line: int = 1

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}" if self.line > 1 else f"column {self.column}"
        return f"at {where}: {self.message}"


class DslError(ProcessorsError, ValueError):
    """An expression that does not compile; `problems` lists every problem found, in text order."""

    def __init__(self, expression: str, problems: Sequence[DslProblem]) -> None:
        self.expression = expression
        self.problems = list(problems)
        lines = "".join(f"\n  {problem}" for problem in self.problems)
        count = f"{len(self.problems)} problems" if len(self.problems) != 1 else "1 problem"
        super().__init__(f"{count} in expression {expression!r}:{lines}")

    def __str__(self) -> str:
        return str(self.args[0])


class DslEvaluationError(ProcessorsError, ValueError):
    """A row the compiled expression cannot evaluate: a value whose type violates the schema.

    Documented edge cases (null inputs, division by zero, `sqrt(-1)`, ...) return None instead;
    this is raised only for rows that do not match the schema (or fields typed `any`). `index`
    is the row's position in `evaluate_many` / `evaluate_columns`, when known.
    """

    def __init__(self, expression: str, cause: BaseException, index: int | None = None, row: Any = None) -> None:
        self.expression = expression
        self.index = index
        self.row = row
        where = f" (row {index})" if index is not None else ""
        super().__init__(
            f"expression {expression!r} cannot be evaluated on this row{where}: "
            f"{type(cause).__name__}: {cause}; expected field values of the compiled schema's types"
        )

    def __str__(self) -> str:
        return str(self.args[0])
