"""Hover: a key's type, range, default and doc with this file's resolved value and where it came from;
a ${ref}'s value; a FROM path's file; a directive's keys."""

from __future__ import annotations

import os

from lsprotocol import types

from ..config import Config, Origin
from ..schema import KEYS, SECTION_KEYS, SWEEP, format_value
from ..statements import KEY, LINE, VALUE
from ..trials import SETTINGS
from .completion import directive_about, key_detail
from .cursor import Target
from .diagnostics import shown_path
from .navigation import base_of, target_of
from .positions import Codec
from .workspace import Document, Workspace


def _where(origin: Origin, doc: Document) -> str:
    if origin.kind != "file":
        return "the command line" if origin.kind == "cli" else "the default"
    if origin.path == doc.path:
        return f"line {origin.line} of this file"
    place = shown_path(origin.path, os.path.dirname(doc.path))
    return f"{place}:{origin.line}" if origin.line else place


def provenance(config: Config, name: str, doc: Document) -> str:
    """'6, from base.config:3, overriding the default 12': a value, where it was set, what it overrode."""
    value = format_value(config[name]) if name in config else config.env.get(name[4:], "")
    origin = config.origin(name)
    if origin.kind == "default":
        return f"`{value}`, the default"
    older = [f"{o.text} from {_where(o, doc)}" for o in origin.chain()[1:]]
    if name in KEYS:
        older.append(f"the default {format_value(KEYS[name].default)}")
    text = f"`{value}`, from {_where(origin, doc)}"
    return text + (", overriding " + ", ".join(older) if older else "")


def _resolved(workspace: Workspace, doc: Document) -> tuple[Config | None, str]:
    """(the config hover reads values from, a note on it) of a document."""
    analysis = workspace.analyze(doc.path)
    if analysis.config is not None:
        return analysis.config, ""
    values = analysis.values(workspace)
    if values is not None:
        return values, " (resolved without the lines that have errors)"
    return None, ""


def _key_text(workspace: Workspace, doc: Document, name: str) -> str | None:
    spec = KEYS.get(name)
    if spec is None:
        return None
    text = f"**{name}** ({spec.section}): {key_detail(spec)}\n\n{spec.doc}"
    config, note = _resolved(workspace, doc)
    if config is not None:
        return text + f"\n\nHere: {provenance(config, name, doc)}{note}"
    own = [item for item in workspace.source(doc.path, doc.text).sets if item[KEY] == name]
    if own:
        return text + (f"\n\nSet to `{format_value(own[-1][VALUE])}` at line {own[-1][LINE]} of this file; "
                       "the resolved value is unknown while the config has errors.")
    return text + "\n\nResolved value unknown: the config has errors."


def _env_text(workspace: Workspace, doc: Document, name: str) -> str:
    config, note = _resolved(workspace, doc)
    if config is not None and name in config.env:
        return f"**ENV {name}**\n\nHere: {provenance(config, 'ENV.' + name, doc)}{note}"
    if name in os.environ:
        return f"**ENV {name}**\n\nNot set by ENV: `{os.environ[name]}`, from the environment"
    return f"**ENV {name}**\n\nNot set by ENV nor in the environment"


def _ref_text(workspace: Workspace, doc: Document, ref: str) -> str | None:
    if ref.startswith("env:"):
        name, _, default = ref[4:].partition(":-")
        text = _env_text(workspace, doc, name)
        return text + (f" (default `{default}`)" if default and ":-" in ref else "")
    spec = KEYS.get(ref)
    if spec is None:
        return None
    config, note = _resolved(workspace, doc)
    if config is None:
        return f"`${{{ref}}}`: unknown while the config has errors"
    return f"`${{{ref}}}` = {provenance(config, ref, doc)}{note}\n\n{spec.doc}"


def _text(workspace: Workspace, doc: Document, target: Target) -> str | None:
    if target.kind == "key":
        if target.directive == "ENV":
            return _env_text(workspace, doc, target.name)
        if target.directive == SWEEP and target.name in SETTINGS and target.name not in KEYS:
            return f"**{target.name}** (sweep setting)\n\n{SETTINGS[target.name].doc}"
        return _key_text(workspace, doc, target.name)
    if target.kind == "ref":
        return _ref_text(workspace, doc, target.name)
    if target.kind == "path":
        real = base_of(doc, target)
        state = ("open in the editor" if real in workspace.documents else
                 "on disk" if os.path.exists(real) else "not found")
        return f"Base config `{real}` ({state})"
    if target.name in SECTION_KEYS or target.name in ("FROM", "ENV", "SWEEP"):
        return f"**{target.name}**: {directive_about(target.name)}"
    return None


def hover(workspace: Workspace, doc: Document, line: int, col: int, codec: Codec) -> types.Hover | None:
    """The hover at (line, col) of an open document (character column); never for a .py config."""
    target = target_of(doc, line, col)
    if target is None:
        return None
    text = _text(workspace, doc, target)
    if text is None:
        return None
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text),
                       codec.span(doc.lines, target.line, target.start, target.end))
