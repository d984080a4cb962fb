"""Positions between slo's (1-based lines, columns counting characters) and the client's (0-based,
columns counting the code units of the negotiated encoding: UTF-16 unless the client offers another)."""

from __future__ import annotations

import os
import re

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

LINE_ENDS = re.compile(r"\r\n|\r|\n")


class Codec:
    """Converts columns between characters and the client's code units."""

    def __init__(self, encoding: str = types.PositionEncodingKind.Utf16):
        self.encoding = encoding

    def width(self, char: str) -> int:
        if self.encoding == types.PositionEncodingKind.Utf32:
            return 1
        if self.encoding == types.PositionEncodingKind.Utf8:
            return len(char.encode("utf-8", "surrogatepass"))
        return 2 if ord(char) > 0xFFFF else 1

    def to_client(self, line: str, col: int) -> int:
        """The code units of line's first col characters (col past its end counts as its end)."""
        head = line[:max(col, 0)]
        return len(head) if head.isascii() else sum(self.width(c) for c in head)

    def from_client(self, line: str, units: int) -> int:
        """The characters of line that make up its first units code units."""
        if line.isascii():
            return min(max(units, 0), len(line))
        count = 0
        for i, c in enumerate(line):
            if count >= units:
                return i
            count += self.width(c)
        return len(line)

    def position(self, lines: list[str], line: int, col: int) -> types.Position:
        """The client position of (0-based line, 0-based character column)."""
        if line >= len(lines):
            return types.Position(max(len(lines) - 1, 0), self.to_client(lines[-1], len(lines[-1])) if lines else 0)
        return types.Position(line, self.to_client(lines[line], col))

    def span(self, lines: list[str], line: int, start: int, end: int) -> types.Range:
        """The client range of characters start..end (0-based, end exclusive) of one line."""
        return types.Range(self.position(lines, line, start), self.position(lines, line, max(end, start)))

    def point(self, lines: list[str], position: types.Position) -> tuple[int, int]:
        """(0-based line, character column) of a client position."""
        if not 0 <= position.line < len(lines):
            return position.line, 0
        return position.line, self.from_client(lines[position.line], position.character)

    def whole(self, text: str) -> types.Range:
        """The range of a whole text as the client counts it (a byte order mark included; lines end at
        \\n, \\r\\n or \\r, as the protocol says)."""
        lines = LINE_ENDS.split(text)
        return types.Range(types.Position(0, 0), types.Position(len(lines) - 1, self.to_client(lines[-1], len(lines[-1]))))


def uri_of(path: str) -> str:
    return from_fs_path(path) or path


def path_of(uri: str) -> str | None:
    """The absolute path of a file: URI, or None for another scheme (an untitled document)."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return None if path is None else os.path.abspath(path)
