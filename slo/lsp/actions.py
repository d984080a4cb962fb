"""Quick fixes (the fix a diagnostic carries: slo.lsp.diagnostics) and formatting, as ``slo fmt`` does it."""

from __future__ import annotations

from lsprotocol import types

from ..errors import ConfigError
from .positions import Codec
from .workspace import Document


def _fix(diagnostic: types.Diagnostic) -> tuple[str, types.Range] | None:
    """(the text, the range it replaces) a diagnostic of ours carries, or None (a client may send back
    any data, so it is checked, never trusted)."""
    data = diagnostic.data
    if diagnostic.source != "slo" or not isinstance(data, dict):
        return None
    text, where = data.get("fix"), data.get("range")
    if not isinstance(text, str) or not (isinstance(where, list) and len(where) == 4 and
                                         all(type(n) is int and n >= 0 for n in where)):
        return None
    return text, types.Range(types.Position(where[0], where[1]), types.Position(where[2], where[3]))


def code_actions(doc: Document, diagnostics: list[types.Diagnostic]) -> list[types.CodeAction]:
    """A quick fix for each of diagnostics that suggests one (did you mean X?, write key=value)."""
    out = []
    for diagnostic in diagnostics:
        fix = _fix(diagnostic)
        if fix is None:
            continue
        text, where = fix
        edit = types.WorkspaceEdit(changes={doc.uri: [types.TextEdit(where, text)]})
        out.append(types.CodeAction(f"Change to {text}", kind=types.CodeActionKind.QuickFix,
                                    diagnostics=[diagnostic], edit=edit, is_preferred=True))
    return out


def formatting(doc: Document, codec: Codec) -> list[types.TextEdit] | None:
    """The one whole-document edit that gives a .config document slo fmt's layout ([] when it has it);
    None for a text that does not tokenize (its diagnostics say why) or another format."""
    if doc.suffix != ".config":
        return None
    from ..fmt import format_text

    try:
        formatted = format_text(doc.text, doc.path)
    except ConfigError:
        return None
    if formatted == doc.text:
        return []
    return [types.TextEdit(codec.whole(doc.text), formatted)]
