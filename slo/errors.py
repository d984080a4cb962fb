"""Diagnostics and the one exception type of the config tools."""

from __future__ import annotations

from dataclasses import dataclass

QUOTED = 60  # characters of the source line quoted on each side of the value at fault
MESSAGE = 2000  # characters of a message shown


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
        message = self.message
        if len(message) > MESSAGE:
            message = message[:MESSAGE - 200] + " ... " + message[-195:]
        text = f"{self.location()}: {self.severity}: {message}"
        if self.line and self.source:
            src, start, width = _window(self.source.expandtabs(1), self.col - 1, max(1, self.end_col - self.col))
            text += f"\n  {src}\n  {' ' * start}^{'~' * (width - 1)}"
        return text

    def __str__(self) -> str:
        return self.render()


def _window(line: str, start: int, width: int) -> tuple[str, int, int]:
    """(the part of line shown, the caret's column in it, the caret's width): at most QUOTED
    characters either side of the value, whose own middle is left out when it is long."""
    if len(line) <= 2 * QUOTED + 40:
        return line, start, width
    end = min(start + width, len(line))
    if end - start > 2 * QUOTED:  # a long value: its start and its end
        value = line[start:start + QUOTED] + " ... " + line[end - QUOTED:end]
    else:
        value = line[start:end]
    before = line[max(0, start - QUOTED):start]
    after = line[end:end + QUOTED]
    if start > QUOTED:
        before = "..." + before
    if end + QUOTED < len(line):
        after += "..."
    return before + value + after, len(before), max(1, len(value))


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


class UsageError(Exception):
    """A command's arguments cannot be acted on (a flag's value out of range, two flags that exclude each
    other). Entry points print it as argparse prints a usage error, in one line, and exit with status 2.
    """


def first_line(error: BaseException) -> str:
    """The first line of an exception's text, "" when it has none: what a one-line error shows of it
    (without the advice for programmers Python adds past its int-string limit)."""
    text = str(error).strip()
    return text.splitlines()[0].split("; use sys.set_int_max_str_digits")[0] if text else ""
