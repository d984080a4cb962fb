"""One config file as read, in any format: its bases, its assignments in order, and its problems.

Every format's reader makes a Source (``slo.formats``); the resolver merges
them. Items and FROM items are the tuples of ``slo.statements``.
"""

from __future__ import annotations

from .errors import Diagnostic
from .schema import KEYS, suggest
from .statements import END_COL, KEY, KEY_COL, LINE, VALUE_COL, normalize

CLI_PATH = "<command line>"  # the path of the command line's overrides
STRING_PATH = "<string>"  # the path of a text given without one


class Source:
    """One file, read: its bases, its assignments in order, and its problems."""

    __slots__ = ("path", "text", "bases", "sets", "env", "entries", "env_entries", "errors", "warnings", "_lines")

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.bases: list[tuple] = []  # FROM items
        self.sets: list[tuple] = []
        self.env: list[tuple] = []
        self.entries: dict | None = None  # provenance chains of sets and env, where the reader made them
        self.env_entries: dict | None = None
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self._lines: list[str] | None = None

    def diag(self, line: int, col: int, end_col: int, message: str, severity: str = "error") -> Diagnostic:
        if self._lines is None:
            self._lines = normalize(self.text).split("\n")
        source = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        return Diagnostic(self.path, line, col, message, end_col, severity, source)

    def error(self, line: int, col: int, end_col: int, message: str) -> None:
        self.errors.append(self.diag(line, col, end_col, message))

    def add(self, item: tuple, section: str | None, seen: dict) -> None:
        """Check that item's key exists and lives in section (None: anywhere), then keep it."""
        key = item[KEY]
        spec = KEYS.get(key)
        if spec is None:
            self.error(item[LINE], item[KEY_COL], item[VALUE_COL] - 1, f"Unknown key {key}{suggest(key, KEYS)}")
        elif section is not None and spec.section != section:
            self.error(item[LINE], item[KEY_COL], item[VALUE_COL] - 1, f"{key} belongs to {spec.section}, not {section}")
        else:
            self.note_twice(key, item, seen)
            self.sets.append(item)

    def note_twice(self, name: str, item: tuple, seen: dict) -> None:
        """Warn when name was set before in this file (seen: name -> first item)."""
        first = seen.get(name)
        if first is not None:
            self.warn_twice(name, item, first)
        seen[name] = item

    def warn_twice(self, name: str, item: tuple, first: tuple) -> None:
        if item[LINE]:
            self.warnings.append(self.diag(item[LINE], item[KEY_COL], item[END_COL], (
                f"{name} is set twice in this file (first at {self.path}:{first[LINE]}:{first[KEY_COL]});"
                " the later value wins"), "warning"))
