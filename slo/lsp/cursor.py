"""What is at a position of a .config text, however half-typed: the directive, a key, a value, a ${ref}.

The tokenizer drops a statement with an error whole, and text being typed is
full of them, so the editor's features read lines with this forgiving lexer
instead: words split at blanks, quotes kept within a word, a ``#`` at a
word's start opening a comment, a last ``\\`` continuing the statement on the
next line (comment lines inside a continuation skipped), as ``slo.lexer``
reads them. Lines and columns are 0-based and count characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BLANKS = " \t\r\f\v"
_REF = re.compile(r"\$\{([^}]*)\}?")  # a ${...} in a value; the closing brace may not be typed yet


@dataclass(frozen=True)
class Word:
    line: int
    start: int
    end: int  # one past the last character
    text: str


@dataclass(frozen=True)
class Place:
    """What a completion at a position adds to: its kind, and the part of a word typed before it.

    kind: "directive", "key", "value", "ref" (inside ``${``), "path" (after FROM),
    or "none" (a comment, a quoted key, ...).
    """

    kind: str
    directive: str = ""  # the statement's directive, upper-cased ("" at the directive itself)
    key: str = ""  # of a value or a ${ref} in it
    prefix: str = ""
    start: int = 0  # the column where prefix starts: a completion replaces prefix
    from_allowed: bool = True  # no directive but FROM above: FROM may start this statement


@dataclass(frozen=True)
class Target:
    """What hover and go to definition act on: kind "key", "ref", "path" or "directive", and its name."""

    kind: str
    name: str
    line: int
    start: int
    end: int
    directive: str = ""
    quote: str = ""  # a FROM path's quote character, if it is quoted


def split_lines(text: str) -> list[str]:
    """The lines of a text as the tokenizer counts them (no BOM, \\r\\n as \\n, split at \\n only)."""
    return text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")


def lex_line(line: int, text: str) -> tuple[list[Word], bool, bool]:
    """(the words of one line, whether a comment starts it, whether a last \\ continues it)."""
    words: list[Word] = []
    pos, n = 0, len(text)
    while pos < n:
        while pos < n and text[pos] in BLANKS:
            pos += 1
        if pos >= n:
            break
        if text[pos] == "#":
            return words, not words, False
        if text[pos] == "\\" and not text[pos + 1:].strip(BLANKS):
            return words, False, True
        start = pos
        while pos < n and text[pos] not in BLANKS:
            c = text[pos]
            if c in "\"'":
                close = _closing(text, pos)
                pos = n if close < 0 else close + 1
                continue
            if c == "\\" and not text[pos + 1:].strip(BLANKS):
                break
            pos += 1
        words.append(Word(line, start, pos, text[start:pos]))
    return words, False, False


def _closing(text: str, pos: int) -> int:
    """The position of the quote that closes the one at pos (a \\" in double quotes does not), or -1."""
    quote, pos = text[pos], pos + 1
    while pos < len(text):
        if text[pos] == quote:
            return pos
        pos += 2 if quote == '"' and text[pos] == "\\" else 1
    return -1


def statement_lines(lines: list[str], line: int) -> tuple[int, list[Word]]:
    """(the first line of the statement around line, its words from there through line's end)."""
    start = line
    while True:
        above = start - 1
        while above >= 0 and lex_line(above, lines[above])[1]:
            above -= 1
        if above < 0 or not lex_line(above, lines[above])[2]:
            break
        start = above
    words: list[Word] = []
    for i in range(start, line + 1):
        line_words, is_comment, _ = lex_line(i, lines[i])
        if not (is_comment and i != line):
            words += line_words
    return start, words


def _from_allowed(lines: list[str], first: int) -> bool:
    """True when no statement above line first starts with a directive other than FROM."""
    continued = False
    for i in range(first):
        words, _, continues = lex_line(i, lines[i])
        if words and not continued and words[0].text.upper() != "FROM":
            return False
        continued = continues or (continued and not words and lines[i].strip(BLANKS).startswith("#"))
    return True


def place_at(lines: list[str], line: int, col: int) -> Place:
    """What a completion at (line, col) would complete."""
    if not 0 <= line < len(lines):
        return Place("none")
    col = min(col, len(lines[line]))
    first, words = statement_lines(lines, line)
    _, is_comment, _ = lex_line(line, lines[line])
    comment_at = _comment_start(lines[line])
    if is_comment or (comment_at is not None and col > comment_at):
        return Place("none")
    here = next((w for w in words if w.line == line and w.start <= col <= w.end), None)
    before = [w for w in words if (w.line, w.start) < (line, col) and w is not here]
    typed = here.text[:col - here.start] if here else ""
    start = here.start if here else col
    if not before:
        return Place("directive", prefix=typed, start=start, from_allowed=_from_allowed(lines, first))
    directive = before[0].text.upper()
    if directive == "FROM":
        quoted = typed[:1] in ("'", '"')
        return Place("path", directive, prefix=typed[quoted:], start=start + quoted)
    key, eq, value = typed.partition("=")
    if not eq:
        return Place("key", directive, prefix=typed, start=start)
    value_start = start + len(key) + 1
    ref = value.rfind("${")
    if ref >= 0 and "}" not in value[ref:] and value[:1] != "'":
        return Place("ref", directive, key, value[ref + 2:], value_start + ref + 2)
    quoted = value[:1] in ("'", '"')
    return Place("value", directive, key, value[quoted:], value_start + quoted)


def _comment_start(text: str) -> int | None:
    """The column of the # that starts a comment on a line, or None."""
    words, _, _ = lex_line(0, text)
    end = words[-1].end if words else 0
    at = text.find("#", end)
    return at if at >= 0 and not text[end:at].strip(BLANKS) else None


def target_at(lines: list[str], line: int, col: int) -> Target | None:
    """The key, ${ref}, FROM path or directive under (line, col), or None."""
    if not 0 <= line < len(lines):
        return None
    _, words = statement_lines(lines, line)
    here = next((w for w in words if w.line == line and w.start <= col <= w.end), None)
    if here is None:
        return None
    directive = words[0].text.upper()
    if here is words[0]:
        return Target("directive", directive, line, here.start, here.end)
    if directive == "FROM":
        quote = here.text[:1] if here.text[:1] in ("'", '"') else ""
        body = here.text[len(quote):]
        if quote and body.endswith(quote):
            body = body[:-1]
        return Target("path", body, line, here.start, here.end, directive, quote)
    key, eq, value = here.text.partition("=")
    if col <= here.start + len(key) or not eq:
        return Target("key", key, line, here.start, here.start + len(key), directive)
    value_start = here.start + len(key) + 1
    if value[:1] != "'":
        for m in _REF.finditer(value):
            if value_start + m.start() <= col <= value_start + m.end():
                return Target("ref", m.group(1), line, value_start + m.start(), value_start + m.end(), directive)
    return Target("key", key, line, here.start, here.start + len(key), directive)


_TOML_KEY = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=")


def toml_key_at(lines: list[str], line: int, col: int) -> Target | None:
    """The key of a TOML ``key = value`` line under (line, col), or None."""
    if not 0 <= line < len(lines):
        return None
    m = _TOML_KEY.match(lines[line])
    if m is None or not m.start(1) <= col <= m.end(1):
        return None
    return Target("key", m.group(1), line, m.start(1), m.end(1))
