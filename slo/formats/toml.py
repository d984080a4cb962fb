"""TOML configs: read into a Source, written from a Document.

    extends = ["base.toml"]    # FROM; paths relative to this file
    [model]                    # one table per directive, lower case
    n_layer = 8
    [env]
    OMP_NUM_THREADS = "4"
    [sweep]                    # SWEEP
    learning_rate = [1e-3, 3e-3]        # the choices
    dropout = "uniform(0,0.2)"          # a range, as a string
    trials = 20                         # the sweep's settings: integers,
    metric = "hellaswag/acc_norm"       # and strings for metric and goal

Values keep TOML's types; the schema types and checks them as it does a
.config's. Strings are interpolated like a bare .config value (``${key}``,
``${env:NAME}``; ``$$`` is a literal ``$``), so the writer doubles every
``$``. TOML has no null: None is written as the string "None", which the keys
that take None read as None.

tomllib keeps no positions, so after it has parsed the text a small scan
finds the line and columns of every key, value and table, for messages and
for comments.
"""

from __future__ import annotations

import bisect
import datetime
import difflib
import re
import tomllib

import tomli_w

from ..schema import CONVERT, ENV_NAME, KEYS, SECTION_KEYS, SECTIONS, SWEEP, format_value, suggest
from ..source import Source
from ..statements import BARE, DOUBLE, END_COL, KEY, KEY_COL, LINE, QUOTE, VALUE, VALUE_COL, normalize
from ..trials import SETTINGS, unknown_key
from .comments import Comments, block_lines, extract, source_lines
from .document import Document, Interpolated, opening

TABLES = tuple(s.lower() for s in SECTIONS) + ("env", "sweep")
_RANGE = re.compile(r"(log|uniform|int)\(")  # how slo.trials tells a range from a comma list
_ERROR_AT = re.compile(r" \(at (?:line (\d+), column (\d+)|end of document)\)$")
_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_HEADER = re.compile(r"\s*\[")


# ---- positions ------------------------------------------------------------
# where[key path] = (line, key_col, value_col, end_line, end_col, strings), strings
# being the (line, col, end_col) of the string literals in the value; a table
# header's path maps to its own position with value_col = key_col.

def _string_end(text: str, pos: int) -> int:
    q = text[pos]
    n = len(text)
    if text.startswith(q * 3, pos):
        pos += 3
        while pos < n and not text.startswith(q * 3, pos):
            pos += 2 if q == '"' and text[pos] == "\\" else 1
        pos += 3
        while pos < n and text[pos] == q:  # up to two quotes may end the content
            pos += 1
        return min(pos, n)
    pos += 1
    while pos < n and text[pos] != q and text[pos] != "\n":
        pos += 2 if q == '"' and text[pos] == "\\" else 1
    return min(pos + 1, n)


def _skip(text: str, pos: int, newlines: bool) -> int:
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == " " or c == "\t" or (newlines and c in "\r\n"):
            pos += 1
        elif newlines and c == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
        else:
            break
    return pos


def _value_end(text: str, pos: int, strings: list) -> int:
    """Where the value at pos ends (arrays and inline tables whole); its strings go to strings."""
    n = len(text)
    depth = 0  # brackets and braces still open; tomllib has checked that they pair up
    while pos < n:
        c = text[pos]
        if c in ("'", '"'):
            end = _string_end(text, pos)
            strings.append((pos, end))
            pos = end
        elif c in ("[", "{"):
            depth += 1
            pos += 1
        elif depth == 0:  # a bare scalar: up to a comment or the end of the line
            end = text.find("\n", pos)
            end = n if end < 0 else end
            hash_at = text.find("#", pos, end)
            if hash_at >= 0:
                end = hash_at
            while end > pos and text[end - 1] in " \t\r":
                end -= 1
            return end
        elif c in ("]", "}"):
            depth -= 1
            pos += 1
        elif c == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
        else:
            pos += 1
        if depth == 0:
            return pos
    return pos


def _key(text: str, pos: int) -> tuple[int, tuple[str, ...]]:
    parts = []
    n = len(text)
    while True:
        pos = _skip(text, pos, False)
        if pos < n and text[pos] in ("'", '"'):
            end = _string_end(text, pos)
            try:
                parts.append(tomllib.loads("k = " + text[pos:end])["k"])
            except tomllib.TOMLDecodeError:
                parts.append(text[pos + 1:end - 1])
            pos = end
        else:
            start = pos
            while pos < n and text[pos] in _BARE_KEY:
                pos += 1
            parts.append(text[start:pos])
        pos = _skip(text, pos, False)
        if pos < n and text[pos] == ".":
            pos += 1
            continue
        return pos, tuple(parts)


def positions(text: str) -> dict[tuple, tuple]:
    """Where each key path, table and value is in a text tomllib has accepted."""
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def at(pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(starts, pos)
        return line, pos - starts[line - 1] + 1

    where: dict[tuple, tuple] = {}
    table: tuple[str, ...] = ()
    n = len(text)
    pos = 0
    while pos < n:
        pos = _skip(text, pos, True)
        if pos >= n:
            break
        start = pos
        if text[pos] == "[":
            pos += 2 if text.startswith("[[", pos) else 1
            pos, table = _key(text, pos)
            line, col = at(start)
            where.setdefault(table, (line, col, col, line, col + 1, []))
        else:
            pos, path = _key(text, pos)
            pos = _skip(text, pos, False)
            if pos < n and text[pos] == "=":
                pos = _skip(text, pos + 1, False)
                strings: list = []
                end = _value_end(text, pos, strings)
                line, key_col = at(start)
                _, value_col = at(pos)
                end_line, end_col = at(end)
                where[table + path] = (line, key_col, value_col, end_line, end_col,
                                       [at(a) + (at(b)[1],) for a, b in strings])
                pos = max(end, pos + 1)
        newline = text.find("\n", pos)
        pos = n if newline < 0 else newline + 1
    return where


# ---- reading ---------------------------------------------------------------

def _kind(value) -> str | None:
    """What a non-scalar TOML value is, or None for a scalar."""
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    if isinstance(value, (datetime.date, datetime.time)):
        return "date or time"
    return None


class _Reader:
    def __init__(self, src: Source, body: str):
        self.src = src
        self.lines = body.split("\n")
        self.where = positions(body)
        self.seen: dict = {}

    def item(self, path: tuple, value) -> tuple:
        """(key, value, line, key_col, value_col, end_col, quote) of the value at path."""
        found = self.where.get(path)
        cut = len(path)
        while found is None and cut > 1:  # inside an inline table: point at the table
            cut -= 1
            found = self.where.get(path[:cut])
        if found is None:
            return (path[-1], value, 0, 0, 0, 0, BARE)
        line, key_col, value_col, end_line, end_col, _ = found
        if cut < len(path):
            value_col, end_col = key_col, key_col + len(path[cut - 1])
        elif end_line != line:  # a value over several lines: up to the end of its first
            end_col = len(self.lines[line - 1]) + 1
        return (path[-1], value, line, key_col, value_col, end_col, BARE)

    def error(self, item: tuple, message: str, on_key: bool = True) -> None:
        line, key_col, value_col, end_col = item[LINE], item[KEY_COL], item[VALUE_COL], item[END_COL]
        if on_key:
            self.src.error(line, key_col, key_col + len(item[KEY]), message)
        else:
            self.src.error(line, value_col, end_col, message)

    def extends(self, value) -> None:
        found = self.where.get(("extends",))
        item = self.item(("extends",), value)
        paths = value if isinstance(value, list) else [value]
        if not paths or not all(type(p) is str for p in paths):
            self.error(item, 'extends must be a path or a list of paths: extends = ["base.toml"]', on_key=False)
            return
        spots = (found[5] if found and len(found[5]) == len(paths)
                 else [(item[LINE], item[VALUE_COL], item[END_COL])] * len(paths))
        for path, (line, col, end_col) in zip(paths, spots):
            self.src.bases.append((path, line, col, end_col, BARE))

    def table(self, name: str, values: dict) -> None:
        section = name.upper()
        for key, value in values.items():
            item = self.item((name, key), value)
            kind = _kind(value)
            if section == "ENV":
                if not ENV_NAME.match(key):
                    self.error(item, f"Invalid ENV name {key!r}: use letters, digits and _, not starting with a digit")
                elif type(value) is not str:
                    shown = kind and f"a TOML {kind}" or tomli_w.dumps({"v": value})[4:-1]
                    self.error(item, f"ENV {key}={shown} must be a string: quote it", on_key=False)
                else:
                    self.src.note_twice("ENV." + key, item, self.seen)
                    self.src.env.append(item)
            elif kind and key in KEYS:
                self.error(item, f"{key} takes one value (a number, string or boolean), not a TOML {kind}",
                           on_key=False)
            else:
                self.src.add(item, section, self.seen)

    def sweep(self, name: str, values: dict) -> None:
        """The [sweep] table: each key's choices (an array, or one value), its range (a string such as
        "log(1e-4,1e-2)") or a comma list as one string, and the sweep's settings (integers; metric and goal
        strings)."""
        swept: dict = {}
        for key, value in values.items():
            item = self.item((name, key), value)
            problem = None if unknown_key(key) else _sweep_problem(key, value)
            if problem:
                self.error(item, problem, on_key=False)
            else:
                self.src.add_swept(_seeds(item), swept)

    def top(self, name: str, value) -> None:
        if name == "extends":
            self.extends(value)
        elif isinstance(value, dict) and name.upper() == SWEEP:
            self.sweep(name, value)
        elif isinstance(value, dict) and (name.upper() in SECTION_KEYS or name.upper() == "ENV"):
            self.table(name, value)
        else:
            item = self.item((name,), value)
            if isinstance(value, dict):
                close = difflib.get_close_matches(name.lower(), TABLES, n=1, cutoff=0.6)
                hint = f"did you mean [{close[0]}]?" if close else "tables: " + ", ".join(TABLES)
                self.error(item, f"Unknown table [{name}] ({hint})")
            elif name in KEYS:
                self.error(item, f"{name} belongs in the [{KEYS[name].section.lower()}] table")
            else:
                self.error(item, f"Unknown key {name}{suggest(name, tuple(KEYS) + ('extends',))}")


def _sweep_problem(key: str, value) -> str | None:
    """What is wrong with a [sweep] value that slo.trials would not say in TOML's terms, if anything."""
    kind = _kind(value)
    if key in SETTINGS and not (key == "seed" and kind == "array"):
        one = "integer" if SETTINGS[key].is_int else "string"
        return f"{key} takes one {one}, not a TOML {kind}" if kind else None
    if kind == "array":
        if not value:
            return f"{key} = [] is an empty array: give the choices to sweep, such as {key} = [a, b]"
        inner = next((k for k in map(_kind, value) if k), None)
        if inner:
            return f"{key}: each choice is one value (a number, string or boolean), not a TOML {inner}"
        if key == "seed" and len(value) == 1:
            return (f"seed = [{tomli_w.dumps({'v': value[0]})[4:-1]}] sweeps one training seed: set seed in "
                    "[train], or give the draws' seed as an integer (seed = 0)")
    elif kind:
        return (f"{key} takes the choices to sweep ({key} = [a, b]), a range as a string "
                f'({key} = "log(a,b)") or one value, not a TOML {kind}')
    return None


def _seeds(item: tuple) -> tuple:
    """A [sweep] seed array as the comma list slo.trials sweeps (it reads a seed that is not text as the
    draws' seed), placed at the whole array."""
    if item[KEY] != "seed" or not isinstance(item[VALUE], list):
        return item
    text = ",".join(format_value(v) if type(v) is not str else v for v in item[VALUE])
    return item[:VALUE] + (text,) + item[LINE:QUOTE] + (DOUBLE,)


def _syntax_error(src: Source, body: str, error: tomllib.TOMLDecodeError) -> None:
    message = str(error)
    match = _ERROR_AT.search(message)
    if match and match.group(1):
        line, col = int(match.group(1)), int(match.group(2))
    else:
        lines = body.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    if match:
        message = message[:match.start()]
    src.error(line, col, col + 1, f"TOML syntax error: {message}")


def read(text: str, path: str) -> Source:
    """A TOML text as a Source (bases from extends, one table per directive)."""
    src = Source(path, text)
    body = normalize(text)
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as e:
        _syntax_error(src, body, e)
        return src
    except RecursionError:
        src.error(1, 1, 2, "The TOML is nested too deeply to read")
        return src
    except ValueError:  # an integer of thousands of digits
        src.error(1, 1, 2, "The TOML holds a number too large to read")
        return src
    reader = _Reader(src, body)
    for name, value in data.items():
        reader.top(name, value)
    return src


def read_comments(text: str) -> Comments:
    body = normalize(text)
    try:
        data = tomllib.loads(body)
    except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        return Comments()
    where = positions(body)
    anchors = []
    for name, value in data.items():
        if name == "extends" and ("extends",) in where:
            line, _, _, end_line, end_col, _ = where[("extends",)]
            anchors.append(("FROM", line, end_line, end_col))
        elif isinstance(value, dict):
            prefix = name.upper() + "." if name.upper() in ("ENV", SWEEP) else ""
            for key in value:
                if (name, key) in where:
                    line, _, _, end_line, end_col, _ = where[(name, key)]
                    anchors.append((prefix + key, line, end_line, end_col))
    anchors.sort(key=lambda a: (a[1], a[3]))
    return extract(source_lines(text), anchors, see_through=_HEADER.match)


# ---- writing ---------------------------------------------------------------

def value_text(value) -> str:
    """A value as TOML; a plain string reads back as itself ($ doubled), None as "None"."""
    if value is None:
        value = "None"
    elif isinstance(value, Interpolated):
        value = str(value)
    elif type(value) is str:
        value = value.replace("$", "$$")
    return tomli_w.dumps({"v": value})[4:-1]


def sweep_value_text(key: str, value: str | int) -> str:
    """A Document's SWEEP value as TOML: a setting's integer; a comma list as an array of its choices
    typed by the schema (as a string when one does not type, when two are equal (random search tells
    choices apart by value), or when it is a range)."""
    if type(value) is int:
        return str(value)
    if key in SETTINGS and not SETTINGS[key].is_int:  # metric, goal: a string
        return value_text(value)
    if not _RANGE.match(value):
        try:
            choices = [CONVERT[key](piece) for piece in value.split(",")]
        except ValueError:
            choices = None
        if choices is not None and len(set(choices)) == len(choices):
            text = Interpolated if isinstance(value, Interpolated) else str  # a string choice as the list is
            return "[" + ", ".join(value_text(text(c) if type(c) is str else c) for c in choices) + "]"
    return value_text(value)


def write(doc: Document) -> str:
    comments = doc.comments
    out = opening(doc, lambda paths: "extends = [" + ", ".join(tomli_w.dumps({"v": p})[4:-1] for p in paths) + "]")
    # TOML has no null: a None that nothing below overrides is left out (it is the default, and every
    # key that takes None has it as its default); over bases, it is the string "None".
    tables = [(s.lower(), [(k, k, value_text(doc.values[k])) for k in keys
                           if doc.bases or doc.values[k] is not None]) for s, keys in doc.sections()]
    tables = [(table, rows) for table, rows in tables if rows]
    if doc.env:
        tables.append(("env", [("ENV." + name, name, value_text(v)) for name, v in doc.env.items()]))
    if doc.sweep:
        tables.append(("sweep", [(f"{SWEEP}.{key}", key, sweep_value_text(key, v)) for key, v in doc.sweep.items()]))
    for table, rows in tables:
        if out:
            out.append("")
        out.append(f"[{table}]")
        for name, key, text in rows:
            out += comments.lines_above(name)
            out.append(f"{key} = {text}{comments.after(name)}")
    if comments.footer:
        out += [""] + block_lines(comments.footer)
    return "\n".join(out) + "\n" if out else ""
