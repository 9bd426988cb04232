"""Errors of `processors`.

ProcessorsError
├── DefinitionError     feature-group YAML with problems (all of them, with file and line)
└── RegistryError       a registry conflict (changed semantics under one version, unknown group)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DefinitionError", "Problem", "ProcessorsError", "RegistryError"]


class ProcessorsError(Exception):
    """Root of every error raised by `processors`."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition, located as precisely as known."""

    file: str
    message: str
    line: int | None = None
    group: str | None = None
    feature: str | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        what = "".join(
            [f" group {self.group!r}" if self.group else "", f" feature {self.feature!r}" if self.feature else ""]
        )
        return f"{where}:{what}: {self.message}" if what else f"{where}: {self.message}"


class DefinitionError(ProcessorsError):
    """Definitions with problems; `problems` holds every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in feature definitions:\n{lines}")


class RegistryError(ProcessorsError):
    """The registry refused a change, or does not know a group."""
