""".config files as a converter sees them: reading their comments, writing them with comments.

Reading values is slo.resolve.read_config. The writer makes the same text as
``slo show`` (one statement per directive, continued with ``\\``), and puts
comments back: a comment line above a key goes above its statement or, inside
a continued statement, on a line of its own (the tokenizer skips those); a
trailing comment ends its statement, and the next key starts a new one.
"""

from __future__ import annotations

from ..dump import config_value, quote
from ..resolve import Source, read_config
from ..tokenizer import scan
from .comments import Comments, block_lines, extract, source_lines
from .document import Document, Interpolated

_NOT_BARE = frozenset(" \t\r\f\v\n\"'\\")


def read(text: str, path: str) -> Source:
    return read_config(text, path)


def read_comments(text: str) -> Comments:
    statements, _ = scan(text)
    anchors = []
    for directive, _line, _col, items in statements:
        for item in items:
            if directive == "FROM":
                anchors.append(("FROM", item[1], item[1], item[3]))
            else:
                name = "ENV." + item[0] if directive == "ENV" else item[0]
                anchors.append((name, item[2], item[2], item[5]))
    return extract(source_lines(text), anchors)


def interpolated_text(value: str) -> str:
    """value as a .config word that is interpolated when read: bare, or double-quoted with $ kept."""
    if value and value[0] != "#" and _NOT_BARE.isdisjoint(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _text(key: str, value) -> str:
    return interpolated_text(value) if isinstance(value, Interpolated) else config_value(key, value)


def _env_text(value: str) -> str:
    return interpolated_text(value) if isinstance(value, Interpolated) else quote(value)


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
    out = block_lines(comments.header)
    if out:
        out.append("")
    if doc.bases:
        out += comments.lines_above("FROM")
        out.append("FROM " + " ".join(quote(b) for b in doc.bases) + comments.after("FROM"))
        out.append("")
    groups = [(s, [(k, f"{k}={_text(k, doc.values[k])}") for k in keys]) for s, keys in doc.sections()]
    if doc.env:
        groups.append(("ENV", [("ENV." + name, f"{name}={_env_text(v)}") for name, v in doc.env.items()]))
    for directive, pairs in groups:
        if out and out[-1] and comments.above.get(pairs[0][0]):
            out.append("")  # a comment above a statement reads better after a blank line
        out += _statements(directive, pairs, comments)
    if comments.footer:
        out += [""] + block_lines(comments.footer)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""
