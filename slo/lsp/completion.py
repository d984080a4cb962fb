"""Completion in .config documents: directives, the keys of the directive being written, values, ${refs},
FROM paths. Everything offered comes from the schema (slo.schema) and the files on disk."""

from __future__ import annotations

import os
import re

from lsprotocol import types

from ..formats import FORMATS
from ..schema import DIRECTIVES, KEYS, SECTION_KEYS, SWEEP, Key, format_value
from ..trials import SETTINGS
from .cursor import Place, place_at
from .positions import Codec
from .workspace import Document, Workspace

MAX_ENTRIES = 500  # of one folder, offered after FROM
_ABOUT = {"FROM": "Inherit the values set in base configs (paths relative to this file).",
          "ENV": "Set environment variables for the run: ENV NAME=value.",
          SWEEP: "Sweep keys over values: SWEEP key=a,b, or key=log(a,b), uniform(a,b) or int(a,b) with trials=N; "
                 "settings " + ", ".join(SETTINGS) + "."}
_KIND = types.CompletionItemKind


def directive_about(name: str) -> str:
    """One line on what a directive is for."""
    return _ABOUT.get(name) or "Keys: " + ", ".join(SECTION_KEYS.get(name, ())) + "."


def key_detail(spec: Key) -> str:
    """A key's type, default and allowed range on one line."""
    detail = f"{spec.type_name}, default {format_value(spec.default)}"
    rule = spec.range_text()
    return f"{detail}; {rule}" if rule else detail


def value_choices(spec: Key) -> list[str]:
    """The values to offer for a key: its bools or choices, the words of its allowed text that its
    pattern takes (device: auto, cpu, cuda, mps), None where it is optional, and its default."""
    if spec.type is bool:
        values = ["True", "False"]
    elif spec.choices:
        values = list(spec.choices)
    elif spec.pattern and spec.allowed.startswith("one of "):
        values = [w for w in spec.allowed[len("one of "):].split(", ") if re.fullmatch(spec.pattern, w)]
    else:
        values = []
    if spec.optional:
        values.append("None")
    default = format_value(spec.default)
    if default not in values:
        values.append(default)
    return values


def _item(label: str, kind, edit: types.Range, new_text: str | None = None, detail: str | None = None,
          doc: str | None = None, sort: str | None = None) -> types.CompletionItem:
    return types.CompletionItem(label, kind=kind, detail=detail, documentation=doc, sort_text=sort,
                                filter_text=label, text_edit=types.TextEdit(edit, label if new_text is None else new_text))


def _directives(place: Place, edit: types.Range) -> list[types.CompletionItem]:
    out = []
    for i, name in enumerate(DIRECTIVES):
        if name == "FROM" and not place.from_allowed:
            continue
        out.append(_item(name, _KIND.Keyword, edit, name + " ", doc=directive_about(name), sort=f"{i:02}"))
    return out


def _keys(place: Place, edit: types.Range) -> list[types.CompletionItem]:
    if place.directive in SECTION_KEYS:
        names = list(SECTION_KEYS[place.directive])
    elif place.directive == SWEEP:
        names = list(KEYS) + list(SETTINGS)
    else:
        return []
    out = []
    for name in names:
        spec = KEYS.get(name)
        detail = key_detail(spec) if spec else "sweep setting"
        out.append(_item(name, _KIND.Property, edit, name + "=", detail, spec.doc if spec else SETTINGS[name].doc))
    return out


def _values(place: Place, edit: types.Range) -> list[types.CompletionItem]:
    if place.directive == SWEEP and place.key in SETTINGS and place.key not in KEYS:
        return [_item(v, _KIND.Value, edit, sort=f"{i:02}") for i, v in enumerate(SETTINGS[place.key].choices)]
    spec = KEYS.get(place.key)
    if spec is None or place.directive not in SECTION_KEYS:
        return []
    default = format_value(spec.default)
    return [_item(v, _KIND.Value, edit, detail="default" if v == default else None, sort=f"{i:02}")
            for i, v in enumerate(value_choices(spec))]


def _refs(place: Place, edit: types.Range, closed: bool, env_names) -> list[types.CompletionItem]:
    end = "" if closed else "}"
    if place.prefix.startswith("env:"):
        return [_item("env:" + name, _KIND.Variable, edit, f"env:{name}{end}", "set by ENV") for name in env_names]
    out = [_item(name, _KIND.Property, edit, name + end, key_detail(spec), spec.doc) for name, spec in KEYS.items()]
    out.append(_item("env:", _KIND.Module, edit, "env:", "an environment variable: ${env:NAME} or "
                     "${env:NAME:-default}"))
    return out


def _paths(doc: Document, place: Place, codec: Codec, line: int, col: int) -> list[types.CompletionItem]:
    folder_typed = place.prefix[:place.prefix.rfind("/") + 1]
    partial = place.prefix[len(folder_typed):]
    folder = os.path.join(os.path.dirname(doc.path), os.path.expanduser(folder_typed))
    edit = codec.span(doc.lines, line, place.start + len(folder_typed), col)
    out = []
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= MAX_ENTRIES:
                    break
                name = entry.name
                if not name.startswith(partial) or name.startswith(".") and not partial.startswith("."):
                    continue
                if entry.is_dir():
                    out.append(_item(name + "/", _KIND.Folder, edit))
                elif entry.is_file() and os.path.splitext(name)[1].lower() in FORMATS and \
                        os.path.abspath(entry.path) != doc.path:
                    out.append(_item(name, _KIND.File, edit))
    except (OSError, ValueError):  # a folder that is not there, or a name the system refuses
        return []
    return sorted(out, key=lambda item: item.label)


def completions(workspace: Workspace, doc: Document, line: int, col: int, codec: Codec) -> list[types.CompletionItem]:
    """What may be written at (line, col) of an open .config document (character column)."""
    if doc.suffix != ".config" and doc.suffix in FORMATS:
        return []
    place = place_at(doc.lines, line, col)
    if place.kind == "none":
        return []
    if place.kind == "path":
        return _paths(doc, place, codec, line, col)
    edit = codec.span(doc.lines, line, place.start, col)
    if place.kind == "directive":
        return _directives(place, edit)
    if place.kind == "key":
        return _keys(place, edit)
    if place.kind == "value":
        return _values(place, edit)
    closed = doc.lines[line][col:col + 1] == "}"
    config = workspace.analyze(doc.path).values(workspace)
    env_names = sorted({item[0] for item in workspace.source(doc.path, doc.text).env} | set(config.env if config else ()))
    return _refs(place, edit, closed, env_names)
