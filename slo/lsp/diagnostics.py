"""An analysed document's problems as LSP diagnostics.

A problem in the document is shown at its value (slo's line, column and end
column); one in a base at the document's FROM that reads the base, with the
base's own place as related information, as is each other place a message
names (``n_head from base.config:8:24``). Where slo's message suggests a fix
(``did you mean n_embd?``, ``write n_layer=6``) the diagnostic carries it as
data, for the quick fix (slo.lsp.actions).
"""

from __future__ import annotations

import os
import re

from lsprotocol import types

from ..errors import Diagnostic
from ..statements import FROM_COL, FROM_END_COL, FROM_LINE
from .cursor import split_lines
from .positions import Codec, uri_of
from .workspace import Analysis, Workspace

SOURCE = "slo"
_SUGGESTION = re.compile(r"\(did you mean ([^\s?]+)\?\)")
_UNKNOWN = re.compile(r"Unknown \w+ (\S+)")
_WRITE = re.compile(r"write ([A-Za-z_]\w*=\S+)$")
_SPACED_PAIR = re.compile(r"([A-Za-z_]\w*)[ \t]*=[ \t]*(\S+)")
_SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}


def shown_path(path: str, folder: str) -> str:
    """path as the messages of a document in folder show it: relative when it is under folder."""
    if folder and folder != os.sep and path.startswith(folder + os.sep):
        return path[len(folder) + 1:]
    return path


def _message(text: str, folder: str) -> str:
    return text.replace(folder + os.sep, "") if folder and folder != os.sep else text


def _range(codec: Codec, lines: list[str], d: Diagnostic) -> types.Range:
    if not d.line:
        return codec.span(lines, 0, 0, 0)
    return codec.span(lines, d.line - 1, d.col - 1, max(d.end_col, d.col + 1) - 1)


def _related(codec: Codec, analysis: Analysis, d: Diagnostic, folder: str) -> list[types.DiagnosticRelatedInformation]:
    """Each place in an analysed file that d's message names (path:line:col), as related information."""
    out = []
    for path, text in analysis.texts.items():
        for m in re.finditer(re.escape(path) + r":(\d+):(\d+)", d.message):
            line, col = int(m.group(1)), int(m.group(2))
            if not line:
                continue
            where = types.Location(uri_of(path), codec.span(split_lines(text), line - 1, col - 1, col - 1))
            out.append(types.DiagnosticRelatedInformation(where, f"{shown_path(path, folder)}:{line}:{col}"))
    return out


def fix_of(message: str, lines: list[str], rng: tuple[int, int, int]) -> tuple[tuple[int, int, int], str] | None:
    """(the range to replace: line, start, end in characters; the text to put there) of the fix a
    message suggests for the text at rng, or None when it suggests none or the text is not what it
    names."""
    line, start, end = rng
    if not 0 <= line < len(lines):
        return None
    text = lines[line]
    suggestion, unknown = _SUGGESTION.search(message), _UNKNOWN.match(message)
    if suggestion and unknown:
        word, better, here = unknown.group(1), suggestion.group(1), text[start:end]
        if here == word:
            return (line, start, end), better
        if "${" + word + "}" in here:
            return (line, start, end), here.replace("${" + word + "}", "${" + better + "}", 1)
        return None
    write = _WRITE.search(message)
    pair = _SPACED_PAIR.match(text, start) if write else None
    if pair and f"{pair.group(1)}={pair.group(2)}" == write.group(1):
        return (line, start, pair.end()), write.group(1)
    return None


def _here(codec: Codec, lines: list[str], path: str, message: str) -> types.Range | None:
    """The range of the value at the first place in the document at path that message names."""
    m = re.search(re.escape(path) + r":(\d+):(\d+)", message)
    if m is None or not 0 < int(m.group(1)) <= len(lines):
        return None
    line, start = int(m.group(1)) - 1, int(m.group(2)) - 1
    end = start
    while end < len(lines[line]) and not lines[line][end].isspace():
        end += 1
    return codec.span(lines, line, start, end)


def _at_from(workspace: Workspace, analysis: Analysis, codec: Codec, lines: list[str], base: str) -> types.Range:
    """The range of the document's FROM path that reads base (the document's start when none does)."""
    item = workspace.via(analysis, base)
    if item is None:
        return codec.span(lines, 0, 0, 0)
    return codec.span(lines, item[FROM_LINE] - 1, item[FROM_COL] - 1, item[FROM_END_COL] - 1)


def _lsp(codec: Codec, lines: list[str], d: Diagnostic, message: str, rng: types.Range,
         related: list, with_fix: bool) -> types.Diagnostic:
    data = None
    if with_fix and d.line:
        fix = fix_of(d.message, lines, (d.line - 1, d.col - 1, max(d.end_col, d.col + 1) - 1))
        if fix is not None:
            (line, start, end), text = fix
            edit = codec.span(lines, line, start, end)
            data = {"fix": text, "range": [edit.start.line, edit.start.character, edit.end.line, edit.end.character]}
    return types.Diagnostic(rng, message, _SEVERITY.get(d.severity, types.DiagnosticSeverity.Error),
                            source=SOURCE, related_information=related or None, data=data)


def diagnostics(workspace: Workspace, analysis: Analysis, codec: Codec) -> list[types.Diagnostic]:
    """The LSP diagnostics of an analysed open document."""
    path = analysis.path
    folder = os.path.dirname(path)
    lines = split_lines(analysis.texts[path])
    out = []
    for d in analysis.errors + analysis.warnings:
        related = _related(codec, analysis, d, folder)
        message = _message(d.message, folder)
        if d.path == path:
            out.append(_lsp(codec, lines, d, message, _range(codec, lines, d), related, True))
            continue
        at = _here(codec, lines, path, d.message) or _at_from(workspace, analysis, codec, lines, d.path)
        place = f"{shown_path(d.path, folder)}:{d.line}:{d.col}" if d.line else shown_path(d.path, folder)
        if d.path in analysis.texts:
            base_lines = split_lines(analysis.texts[d.path])
            related.insert(0, types.DiagnosticRelatedInformation(
                types.Location(uri_of(d.path), _range(codec, base_lines, d)), message))
        out.append(_lsp(codec, lines, d, f"In {place}: {message}", at, related, False))
    return out
