""".config files: read into a Source, their comments read, written with comments.

The writer makes the same text as ``slo show`` (one statement per directive,
continued with ``\\``), and puts comments back: a comment line above a key
goes above its statement or, inside a continued statement, on a line of its
own (the tokenizer skips those); a trailing comment ends its statement, and
the next key starts a new one.
"""

from __future__ import annotations

from ..schema import DIRECTIVES, KEYS, SWEEP, format_value, suggest
from ..source import Source
from ..statements import END_COL, FROM_END_COL, FROM_LINE, KEY, LINE
from ..lexer import read, scan
from .comments import Comments, block_lines, extract, source_lines
from .document import Document, Interpolated, opening

_NOT_BARE = frozenset(" \t\r\f\v\n\"'$\\")
_NOT_BARE_INTERPOLATED = _NOT_BARE - {"$"}


def read_config(text: str, path: str) -> Source:
    """A .config text as a Source."""
    src = Source(path, text)
    src.bases, src.sets, src.env, problems, errors, src.entries, src.env_entries = read(text, path)
    for line, col, end_col, message in errors:
        src.error(line, col, end_col, message)
    firsts: dict | None = None  # ("ENV" or None, name) -> its first item, made at the first repeat
    swept: dict = {}  # key -> its SWEEP item
    for kind, (directive, line, col, _), item in problems:
        if kind == "late-from":
            src.error(line, col, col + 4, "FROM must come before every other directive")
        elif kind == "directive":
            src.error(line, col, col + len(directive), f"Unknown directive {directive}"
                      f"{suggest(directive, DIRECTIVES) or ' (directives: ' + ', '.join(DIRECTIVES) + ')'}")
        elif kind == "key" and directive == SWEEP:
            src.add_swept(item, swept)
        elif kind == "key":
            src.add(item, directive, {})
        else:  # set twice: the first assignment is the earliest item of that name
            if firsts is None:
                firsts = _firsts(src)
            first = firsts[directive == "ENV", item[KEY]]
            src.warn_twice("ENV." + item[KEY] if directive == "ENV" else item[KEY], item, first)
    return src


def _firsts(src: Source) -> dict:
    """(is ENV, name) -> the first item of that name in src."""
    firsts: dict = {}
    for is_env, items in ((False, src.sets), (True, src.env)):
        for item in items:
            firsts.setdefault((is_env, item[KEY]), item)
    return firsts


def read_comments(text: str) -> Comments:
    statements, _ = scan(text)
    anchors = []
    for directive, _line, _col, items in statements:
        for item in items:
            if directive == "FROM":
                anchors.append(("FROM", item[FROM_LINE], item[FROM_LINE], item[FROM_END_COL]))
            else:
                name = directive + "." + item[KEY] if directive in ("ENV", SWEEP) else item[KEY]
                anchors.append((name, item[LINE], item[LINE], item[END_COL]))
    return extract(source_lines(text), anchors)


def quote(value: str) -> str:
    """value as a .config word: bare when it can be, else quoted so it reads back unchanged."""
    if value and value[0] != "#" and _NOT_BARE.isdisjoint(value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"  # single quotes: no escapes and no interpolation
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace("$", "\\$")
    return f'"{escaped}"'


def config_value(key: str, value) -> str:
    """A key's typed value as a .config word that reads back as itself."""
    if KEYS[key].type is str and value is not None:
        return quote(value)
    return format_value(value)


def interpolated_text(value: str) -> str:
    """value as a .config word that is interpolated when read: bare, or double-quoted with $ kept."""
    if value and value[0] != "#" and _NOT_BARE_INTERPOLATED.isdisjoint(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _text(key: str, value) -> str:
    return interpolated_text(value) if isinstance(value, Interpolated) else config_value(key, value)


def _env_text(value: str) -> str:
    return interpolated_text(value) if isinstance(value, Interpolated) else quote(value)


def sweep_word(value: str | int) -> str:
    """A Document's SWEEP value as a .config word: a setting's integer, or its text (quoted when it must
    be, interpolated when read only if it is Interpolated)."""
    return str(value) if type(value) is int else _env_text(value)


def _statements(directive: str, pairs: list[tuple[str, str]], comments: Comments) -> list[str]:
    """directive's pairs (comment name, 'key=value') as statements, with their comments."""
    indent = " " * (len(directive) + 1)
    out: list[str] = []
    current: list[str] = []
    for name, pair in pairs:
        if not current:
            if out and comments.above.get(name):
                out.append("")
            out += comments.lines_above(name)
            current.append(f"{directive} {pair}")
        else:
            current[-1] += " \\"
            current += comments.lines_above(name, indent)
            current.append(indent + pair)
        tail = comments.after(name)
        if tail:
            current[-1] += tail
            out += current
            current = []
    return out + current


def write(doc: Document) -> str:
    comments = doc.comments
    out = opening(doc, lambda paths: "FROM " + " ".join(quote(p) for p in paths))
    if doc.bases:
        out.append("")
    groups = [(s, [(k, f"{k}={_text(k, doc.values[k])}") for k in keys]) for s, keys in doc.sections()]
    if doc.env:
        groups.append(("ENV", [("ENV." + name, f"{name}={_env_text(v)}") for name, v in doc.env.items()]))
    if doc.sweep:  # after ENV, as slo show writes it
        groups.append((SWEEP, [(f"{SWEEP}.{key}", f"{key}={sweep_word(v)}") for key, v in doc.sweep.items()]))
    for directive, pairs in groups:
        if out and out[-1] and comments.above.get(pairs[0][0]):
            out.append("")  # a comment above a statement reads better after a blank line
        out += _statements(directive, pairs, comments)
    if comments.footer:
        out += [""] + block_lines(comments.footer)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""
