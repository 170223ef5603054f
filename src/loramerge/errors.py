"""Errors that name the offending file or setting, so a failed run says what to fix."""

from __future__ import annotations

from pathlib import Path


class LoramergeError(Exception):
    """Base class of every error this package raises on bad input."""


class AdapterError(LoramergeError):
    """An adapter folder or file that cannot be used; the message starts with its path."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class SubjectError(LoramergeError):
    """A named thing (a file, folder, module, task) that cannot be used; the message starts with its name."""

    def __init__(self, subject: str | Path, problem: str) -> None:
        self.subject = str(subject)
        self.problem = problem
        super().__init__(f"{self.subject}: {problem}")


class ParameterError(LoramergeError):
    """A hyper-parameter outside its range, or one the chosen method does not take."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"parameter {name!r}: {problem}")


class CacheError(LoramergeError):
    """A decomposition cache that is corrupt or was computed from other adapters or settings."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


class StatisticsError(SubjectError):
    """A statistics folder, or one of its files, that cannot be used; the message starts with its path."""
