"""slo fmt: the canonical layout of a .config file, and the command that applies it.

The layout changes whitespace, the case of directive names, where a
statement's lines break, and where a misplaced ``FROM`` stands; it never moves
a pair past another or a comment away from its statement, so what a valid
file means (the order later assignments win in, what ``${refs}`` read, every
value's text and quoting) cannot change:

- directive names upper case; one space between the directive and its pairs
  and between pairs; a pair's text (key, ``=``, value as quoted) as written;
- ``FROM`` first: statements stay in the order written, except that a
  ``FROM`` written after another directive (an error) moves up, with the
  comment lines right above it, to follow the ``FROM``s before it, or else to
  above the first statement and the comment lines that lead into it;
- blank lines part groups of statements as written, at most one in a row,
  none at the start or the end;
- a continued statement keeps its line breaks; its later lines are indented
  under its first pair, and a line past WIDTH columns is wrapped with `` \\``;
- comments stay where they are: a comment line inside a statement is indented
  with its lines, one at the end of a statement keeps its column when the code
  still ends two columns before it (else it follows two spaces), and a comment
  line between statements starts at column 1;
- a ``\\`` that continues a statement into nothing (a blank line, the end of
  the file, or only comment lines) is dropped.

``format_text`` is the API (the language server's formatting); ``run`` is
``slo fmt``. TOML and ``.py`` files are left to their own formatters.
"""

from __future__ import annotations

import difflib
import os
import sys

from . import atomic
from .command import EXIT_CONFIG_ERROR, EXIT_RUN_ERROR, report_config_error
from .errors import ConfigError, Diagnostic, RunError
from .formats.comments import comment_text
from .statements import END_COL, FROM_COL, FROM_END_COL, FROM_LINE, KEY_COL, LINE, normalize
from .lexer import tokenize

WIDTH = 88  # columns, as black's default
STDIN = "-"
OTHER_FORMATTERS = {".toml": "TOML files are left to a TOML formatter (taplo fmt)",
                    ".py": "Python configs are left to a Python formatter (ruff format, black)",
                    ".json": "JSON is written by slo show, not formatted by slo fmt"}


def format_text(text: str, path: str = "<stdin>") -> str:
    """text in the canonical layout; raises ConfigError when it does not tokenize."""
    lines = normalize(text).split("\n")
    out: list[str] = []
    blank = False  # a blank line is due before the next line written
    for kind, written in _from_first(list(_pieces(tokenize(text, path), lines))):
        if kind == BLANK:
            blank = bool(out)
            continue
        out += [""] * blank + written
        blank = False
    return "\n".join(out) + "\n" if out else ""


# A piece of the layout: (BLANK, []), (COMMENT, [line]) between statements, or (directive, its lines).
BLANK, COMMENT = " blank", " comment"  # no directive starts with a space


def _pieces(statements: list[tuple], lines: list[str]):
    """The file as pieces, in the order written, each statement laid out."""
    done = 0  # lines (0-based) up to here are read
    for directive, first, col, items in statements:
        yield from _gap(lines[done:first - 1])
        last = max((_line(directive, item) for item in items), default=first)
        yield directive, _statement(directive, first, col, items, lines, last)
        done = last
    yield from _gap(lines[done:])


def _from_first(pieces: list[tuple]) -> list[tuple]:
    """The pieces with each FROM written after another directive moved up (with the comment lines
    right above it) to follow the FROMs before it, or else to just above the first statement and its
    comment lines; a blank line then parts them from what follows."""
    statements = [i for i, (kind, _) in enumerate(pieces) if kind not in (BLANK, COMMENT)]
    first_other = next((i for i in statements if pieces[i][0] != "FROM"), len(pieces))
    late = [i for i in statements if i > first_other and pieces[i][0] == "FROM"]
    if not late:
        return pieces
    moved, taken = [], set()
    for i in late:
        start = i
        while pieces[start - 1][0] == COMMENT:
            start -= 1
        moved += pieces[start:i + 1]
        taken.update(range(start, i + 1))
    at = first_other
    if statements[0] == first_other:
        while at > 0 and pieces[at - 1][0] == COMMENT:
            at -= 1
    else:
        at = max(i for i in statements if i < first_other) + 1
    rest = [piece for i, piece in enumerate(pieces) if i not in taken]
    return rest[:at] + moved + [(BLANK, [])] + rest[at:]


def _line(directive: str, item: tuple) -> int:
    return item[FROM_LINE] if directive == "FROM" else item[LINE]


def _span(directive: str, item: tuple) -> tuple[int, int]:
    """0-based start and end of an item's text on its line."""
    if directive == "FROM":
        return item[FROM_COL] - 1, item[FROM_END_COL] - 1
    return item[KEY_COL] - 1, item[END_COL] - 1


def _gap(lines: list[str]):
    """The pieces of the lines between statements: blank lines and comment lines (a lone \\ is nothing)."""
    for line in lines:
        text = comment_text(line)
        if text is not None:
            yield COMMENT, ["#" + text]
        elif not line.strip():
            yield BLANK, []


def _statement(directive: str, first: int, col: int, items: list, lines: list[str], last: int) -> list[str]:
    """One statement laid out: its pairs, the comment lines inside it, its trailing comment."""
    rows: list[tuple[str, list[str] | str]] = []  # ("pairs", [texts]) or ("comment", "#text"), by line
    by_line: dict[int, list[str]] = {}
    for item in items:
        start, end = _span(directive, item)
        by_line.setdefault(_line(directive, item), []).append(lines[_line(directive, item) - 1][start:end])
    for number in range(first, last + 1):
        if number in by_line:
            rows.append(("pairs", by_line[number]))
        elif number > first and comment_text(lines[number - 1]) is not None:
            rows.append(("comment", "#" + comment_text(lines[number - 1])))
    ends = _span(directive, items[-1])[1] if items else col - 1 + len(directive)
    trailing = lines[last - 1][ends:].lstrip()
    trailing_col = len(lines[last - 1]) - len(trailing)

    indent = " " * (len(directive) + 1)
    out: list[str] = []
    code: list[int] = []  # indexes in out of the lines with code, each but the last continued
    last_pairs = max((i for i, (kind, _) in enumerate(rows) if kind == "pairs"), default=-1)
    for i, (kind, row) in enumerate(rows):
        if kind == "comment":
            if not out:
                out.append(directive)
                code.append(0)
            out.append(indent + row)
            continue
        for pairs in _wrap(row, len(indent), continued=i < last_pairs):
            out.append((indent if out else directive + " ") + " ".join(pairs))
            code.append(len(out) - 1)
    if not out:
        out, code = [directive], [0]
    for i in code[:-1]:
        out[i] += " \\"
    if trailing.startswith("#"):
        gap = trailing_col - len(out[code[-1]])
        out[code[-1]] += " " * (gap if gap >= 2 else 2) + trailing.rstrip()
    return out


def _wrap(pairs: list[str], indent: int, continued: bool) -> list[list[str]]:
    """One line's pairs as lines of at most WIDTH columns with their indent and, on each line but the last of
    the statement, a `` \\`` (a pair too long for any line stands alone)."""
    out: list[list[str]] = [[]]
    for i, pair in enumerate(pairs):
        backslash = 0 if i == len(pairs) - 1 and not continued else 2
        if out[-1] and indent + len(" ".join(out[-1])) + 1 + len(pair) + backslash > WIDTH:
            out.append([])
        out[-1].append(pair)
    return out


def add_arguments(parser, command) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help=".config files to format in place (- reads stdin "
                        "and writes the result to stdout)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each file that would change (for CI and pre-commit)")
    parser.add_argument("--diff", action="store_true", help="write nothing; print a unified diff of each change")


def run(ns, rest) -> int:
    """Each file in turn, every one tried: 2 when one does not parse or cannot be read, else 1 when one
    cannot be written or (--check) would change, else 0."""
    status = 0
    for name in ns.files:
        try:
            status = max(status, _format_file(name, ns.check, ns.diff))
        except ConfigError as e:
            status = max(status, report_config_error(e))
        except RunError as e:
            print(f"error: {e}", file=sys.stderr)
            status = max(status, EXIT_RUN_ERROR)
    return status


def _format_file(name: str, check: bool, diff: bool) -> int:
    """Format one file (or stdin); 1 when --check finds it would change, 2 for a file of another format, else 0."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in OTHER_FORMATTERS:
        print(f"slo fmt: {name}: {OTHER_FORMATTERS[suffix]}; slo fmt formats .config files", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    text = sys.stdin.read() if name == STDIN else _read(name)
    formatted = format_text(text, "<stdin>" if name == STDIN else name)
    changed = formatted != text
    if diff and changed:
        sys.stdout.writelines(difflib.unified_diff(
            text.splitlines(True), formatted.splitlines(True), f"{name} (as written)", f"{name} (formatted)"))
    if check:
        if changed:
            print(f"would reformat {name}", file=sys.stderr)
        return int(changed)
    if name == STDIN and not diff:
        sys.stdout.write(formatted)
    elif changed and not diff:
        _write(name, formatted)
        print(f"reformatted {name}", file=sys.stderr)
    return 0


def _read(name: str) -> str:
    try:
        with open(name, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(Diagnostic(name, 0, 0, f"Config file not found: {name}")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(Diagnostic(name, 0, 0, f"Cannot read {name}: {getattr(e, 'strerror', None) or e}")) from None


def _write(name: str, text: str) -> None:
    """Replace the file name names (through links) with text atomically, keeping its mode; a read-only
    file is refused, as editors refuse it."""
    real = os.path.realpath(name)
    if not os.stat(real).st_mode & 0o222 or not os.access(real, os.W_OK):
        raise RunError(f"Cannot write {name}: it is read-only (make it writable, or use --check or --diff)")
    try:
        atomic.replace_file(real, lambda f: f.write(text), mode="w", encoding="utf-8", newline="", suffix=".config")
    except OSError as e:
        raise RunError(f"Cannot write {name}: {e.strerror or e}") from None
