"""Diagnostics and the one exception type of the config tools."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a config, located at a value in a file.

    ``path`` is the file ("<string>" for text given directly, "<command line>"
    for overrides); ``line`` and ``col`` are 1-based, 0 when unknown;
    ``end_col`` is one past the last column of the value at fault.
    """

    path: str
    line: int
    col: int
    message: str
    end_col: int = 0
    severity: str = "error"
    source: str = ""  # the source line, for the caret display

    def location(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col}"
        return self.path

    def render(self) -> str:
        text = f"{self.location()}: {self.severity}: {self.message}"
        if self.line and self.source:
            src = self.source.expandtabs(1)
            width = max(1, self.end_col - self.col)
            text += f"\n  {src}\n  {' ' * (self.col - 1)}^{'~' * (width - 1)}"
        return text

    def __str__(self) -> str:
        return self.render()


class ConfigError(ValueError):
    """A config could not be read; ``errors`` holds every diagnostic found."""

    def __init__(self, errors: list[Diagnostic] | Diagnostic | str):
        if isinstance(errors, str):
            errors = [Diagnostic("<config>", 0, 0, errors)]
        elif isinstance(errors, Diagnostic):
            errors = [errors]
        self.errors: list[Diagnostic] = list(errors)
        super().__init__("\n".join(d.render() for d in self.errors))


class RunError(Exception):
    """A run cannot go on (missing dataset, corrupt checkpoint, dead rank, ...).

    The message says what is wrong and how to fix it; entry points print it
    without a traceback and exit with status 1.
    """


def first_line(error: BaseException) -> str:
    """The first line of an exception's text, "" when it has none: what a one-line error shows of it."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
