"""One config file as read, in any format: its bases, its assignments in order, and its problems.

Every format's reader makes a Source (``slo.formats``); the resolver merges
them. Items and FROM items are the tuples of ``slo.statements``.
"""

from __future__ import annotations

import os
import stat

from .errors import Diagnostic
from .schema import KEYS, suggest
from .trials import unknown_key
from .statements import END_COL, KEY, KEY_COL, LINE, VALUE_COL, normalize

MAX_FILE_BYTES = 16 << 20  # a config file larger than this is refused, not read
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO does not wait for a writer
CLI_PATH = "<command line>"  # the path of the command line's overrides
STRING_PATH = "<string>"  # the path of a text given without one


class Source:
    """One file, read: its bases, its assignments in order, and its problems."""

    __slots__ = ("path", "text", "bases", "sets", "env", "sweep", "entries", "env_entries", "errors", "warnings",
                 "_lines")

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.bases: list[tuple] = []  # FROM items
        self.sets: list[tuple] = []
        self.env: list[tuple] = []
        self.sweep: list[tuple] = []  # SWEEP items (slo.trials)
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

    def add_swept(self, item: tuple, seen: dict) -> None:
        """Keep a SWEEP item: a key of the schema or a sweep setting, swept once in this file."""
        key = item[KEY]
        problem = unknown_key(key)
        first = seen.get(key)
        if problem is None and key == "out_dir":
            problem = "out_dir is the sweep's folder (each trial runs in a folder under it), so it is not swept"
        if problem is None and first is not None:
            where = "on the command line" if self.path == CLI_PATH else "in this file"
            problem = f"{key} is swept twice {where} (first at {self.path}:{first[LINE]}:{first[KEY_COL]})"
        if problem is not None:
            self.error(item[LINE], item[KEY_COL], item[VALUE_COL] - 1, problem)
            return
        seen[key] = item
        self.sweep.append(item)

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


def read_file(real: str, display: str) -> tuple[str | None, str | None]:
    """(text, None) of a config file, or (None, the problem): only a regular file of at most
    MAX_FILE_BYTES of UTF-8 is read (a FIFO, a device or a folder never is, so nothing waits)."""
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, f"Config file not found: {display}"
    except OSError as e:
        return None, f"Cannot read {display}: {e.strerror or e}"
    except ValueError as e:  # a path open() refuses, such as one with a NUL in it
        return None, f"Cannot read {display}: {e}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISDIR(info.st_mode):
                return None, f"{display} is a folder, not a config file"
            return None, f"{display} is not a regular file (a pipe, socket or device); name a config file"
        size = min(info.st_size, MAX_FILE_BYTES)
        data = os.read(fd, size + 1)  # all of it in one read, unless it grew since fstat
        while size < len(data) <= MAX_FILE_BYTES:
            more = os.read(fd, MAX_FILE_BYTES + 1 - len(data))
            if not more:
                break
            data += more
    except OSError as e:
        return None, f"Cannot read {display}: {e.strerror or e}"
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return None, f"{display} is larger than {MAX_FILE_BYTES:,} bytes: too large for a config file"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, f"{display} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line})"
