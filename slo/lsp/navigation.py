"""Go to definition (a FROM path's file, where a key's effective value is set, a ${ref}'s statement) and
document symbols (one per statement, its keys inside)."""

from __future__ import annotations

import os

from lsprotocol import types

from ..config import Config
from ..formats import FORMATS
from ..paths import base_paths
from ..schema import SECTION_KEYS, SWEEP
from ..statements import BARE, DOUBLE, END_COL, FROM_COL, FROM_END_COL, FROM_LINE, KEY, KEY_COL, LINE, SINGLE, VALUE
from ..lexer import scan
from .cursor import Target, split_lines, target_at, toml_key_at
from .positions import Codec, uri_of
from .workspace import Document, Workspace

_QUOTES = {"": BARE, '"': DOUBLE, "'": SINGLE}
_SYMBOL = types.SymbolKind


def base_of(doc: Document, target: Target) -> str:
    """The real path of the base a FROM path names."""
    return base_paths((target.name, 0, 0, 0, _QUOTES[target.quote]), os.path.dirname(doc.path))[1]


def target_of(doc: Document, line: int, col: int) -> Target | None:
    """What hover and definition act on at (line, col) of a document: in .config text anything
    target_at finds, in TOML a key; nothing in a .py config."""
    if doc.suffix == ".toml":
        return toml_key_at(doc.lines, line, col)
    if doc.suffix in FORMATS and doc.suffix != ".config":
        return None
    return target_at(doc.lines, line, col)


def _assignments(texts: dict[str, str], config: Config, name: str, codec: Codec) -> list[types.Location]:
    """Where name (a key, or ENV.NAME) is set: the effective assignment first, then each one it
    overrode (none for a default); texts: the text of each file the config was read from."""
    try:
        origins = config.origin(name).chain()
    except KeyError:
        return []
    out = []
    for origin in origins:
        if origin.kind == "file" and origin.line:
            lines, start = split_lines(texts.get(origin.path, "")), origin.col - 1
            out.append(types.Location(uri_of(origin.path),
                                      codec.span(lines, origin.line - 1, start, start + len(origin.text))))
    return out


def definition(workspace: Workspace, doc: Document, line: int, col: int, codec: Codec) -> list[types.Location]:
    """Where the thing at (line, col) of an open document is defined (character column): a FROM path's
    file; for a key or a ${ref}, where its effective value is set, then what that overrode."""
    target = target_of(doc, line, col)
    if target is None or target.kind == "directive":
        return []
    if target.kind == "path":
        real = base_of(doc, target)
        if real in workspace.documents or os.path.isfile(real):
            return [types.Location(uri_of(real), types.Range(types.Position(0, 0), types.Position(0, 0)))]
        return []
    analysis = workspace.analyze(doc.path)
    config = analysis.values(workspace)
    if config is None:
        return []
    name = target.name
    if target.kind == "ref" and name.startswith("env:"):
        name = "ENV." + name[4:].partition(":-")[0]
    elif target.directive == "ENV":
        name = "ENV." + name
    return _assignments(analysis.texts, config, name, codec)


def _kind(directive: str):
    if directive == "FROM":
        return _SYMBOL.File, _SYMBOL.File
    if directive == "ENV":
        return _SYMBOL.Namespace, _SYMBOL.Variable
    if directive == SWEEP:
        return _SYMBOL.Array, _SYMBOL.Property
    return (_SYMBOL.Struct if directive in SECTION_KEYS else _SYMBOL.Namespace), _SYMBOL.Property


def _symbol(lines: list[str], codec: Codec, statement: tuple) -> types.DocumentSymbol:
    directive, line, col, items = statement
    kind, item_kind = _kind(directive)
    children = []
    for item in items:
        if directive == "FROM":
            at = codec.span(lines, item[FROM_LINE] - 1, item[FROM_COL] - 1, item[FROM_END_COL] - 1)
            children.append(types.DocumentSymbol(item[0], item_kind, at, at))
        else:
            at = codec.span(lines, item[LINE] - 1, item[KEY_COL] - 1, item[END_COL] - 1)
            name_at = codec.span(lines, item[LINE] - 1, item[KEY_COL] - 1, item[KEY_COL] - 1 + len(item[KEY]))
            children.append(types.DocumentSymbol(item[KEY], item_kind, at, name_at, detail=str(item[VALUE])))
    head = codec.span(lines, line - 1, col - 1, col - 1 + len(directive))
    end = children[-1].range.end if children else head.end
    return types.DocumentSymbol(directive, kind, types.Range(head.start, end), head,
                                detail=" ".join(c.name for c in children), children=children)


def symbols(workspace: Workspace, doc: Document, codec: Codec) -> list[types.DocumentSymbol]:
    """One symbol per statement of a .config document (those that read without an error), its keys
    inside; the assignments of another format, one each."""
    lines = doc.lines
    if doc.suffix == ".config" or doc.suffix not in FORMATS:
        return [_symbol(lines, codec, statement) for statement in scan(doc.text)[0]]
    out = []
    for item in workspace.source(doc.path, doc.text).sets:
        if item[LINE]:
            at = codec.span(lines, item[LINE] - 1, item[KEY_COL] - 1, item[END_COL] - 1)
            out.append(types.DocumentSymbol(item[KEY], _SYMBOL.Property, at, at, detail=str(item[VALUE])))
    return out
