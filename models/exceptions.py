"""Errors of `models`.

ModelsError
├── SpecError           a model spec with problems (all of them, with file and line)
├── TrainingError       training cannot start or finish (no rows, every node under its minimum…)
├── ExportError         an ONNX export refused: converter trap, or the parity gate failed
├── BundleError         a bundle that cannot be read, or whose checksums do not match
└── ModelRegistryError  a registry action refused (unknown or retired version, unknown alias)
"""

from __future__ import annotations

from processors.exceptions import Problem

__all__ = ["BundleError", "ExportError", "ModelRegistryError", "ModelsError", "SpecError", "TrainingError"]


class ModelsError(Exception):
    """Root of every error raised by `models`."""


class SpecError(ModelsError):
    """A model spec with problems; `problems` holds every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the model spec:\n{lines}")


class TrainingError(ModelsError):
    """Training cannot start or cannot finish."""


class ExportError(ModelsError):
    """A model could not be exported to ONNX, or the export does not predict what the model predicts."""


class BundleError(ModelsError):
    """A bundle is unreadable, incomplete or tampered with."""


class ModelRegistryError(ModelsError):
    """The registry refused an action (nothing was emitted)."""
