"""``slo keys --json-schema``: a JSON Schema (draft 2020-12) of a config's TOML form, made from the schema.

Editors that read JSON Schema for TOML (taplo, Even Better TOML) complete and check a config with it. It
says what slo's TOML reader takes (``slo.formats.toml``): ``extends`` (the bases), a table per directive in
lower case, ``[env]`` and ``[sweep]``; every table and the top level closed (``additionalProperties:
false``). A key's value has the key's type (a whole float is an integer, as slo reads it), its range,
choices or pattern; a key that takes None takes it as a string (TOML has no null). A string holding
``${`` is left for slo to judge (an interpolation such as ``"${max_iters}"``, which ``slo convert``
writes): the schema is an editor's first check, ``slo check`` the last.
"""

from __future__ import annotations

import json

from .schema import _NONES, ENV_NAME, KEYS, SECTION_KEYS, SWEEP, Key
from .trials import SETTINGS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}
BOUNDS = (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"), ("lt", "exclusiveMaximum"))
END = r"(?![\s\S])"  # the end of the text: $ also matches before a last newline in Python's re
INTERPOLATED = {"type": "string", "pattern": r"\$\{",
                "description": "An interpolation (${key}, ${env:NAME}), typed by slo once resolved."}


def json_schema() -> dict:
    tables = {section.lower(): _table(section) for section in SECTION_KEYS}
    tables["env"] = {"type": "object", "description": "Environment variables for the run, set before torch starts.",
                     "propertyNames": {"pattern": ecma_pattern(ENV_NAME.pattern)},
                     "additionalProperties": {"type": "string"}}
    tables[SWEEP.lower()] = _sweep()
    return {
        "$schema": DRAFT,
        "title": "slo config (TOML)",
        "description": "A config of slo in TOML: extends names the bases, a table per directive holds its keys.",
        "type": "object",
        "properties": {"extends": {
            "description": "The bases, as FROM names them: paths relative to this file, applied in order.",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
            **tables},
        "additionalProperties": False,
        "$defs": {"interpolation": INTERPOLATED, **{name: value_schema(key) for name, key in KEYS.items()}},
    }


def _ref(name: str) -> dict:
    return {"$ref": f"#/$defs/{name}"}


def _table(section: str) -> dict:
    return {"type": "object", "description": f"The keys of {section}.",
            "properties": {name: _ref(name) for name in SECTION_KEYS[section]}, "additionalProperties": False}


def value_schema(key: Key) -> dict:
    """What one value of key may be in TOML, with the key's meaning and default."""
    typed: dict = {"type": JSON_TYPES[key.type]}
    typed.update({word: getattr(key, bound) for bound, word in BOUNDS if getattr(key, bound) is not None})
    if key.choices:
        typed["enum"] = list(key.choices)
    elif key.pattern:
        typed["pattern"] = ecma_pattern(key.pattern)
    options = [typed]
    if key.optional:
        options.append({"enum": sorted(_NONES)})
    if len(typed) > 1 or key.type is not str:
        options.append(_ref("interpolation"))
    rule = key.range_text()
    out = {"anyOf": options} if len(options) > 1 else typed
    return {**out, "description": key.doc + (f" Allowed: {rule}." if rule else ""),
            "default": "None" if key.default is None else key.default}


def _sweep() -> dict:
    properties = {}
    for name in [*KEYS, *(s for s in SETTINGS if s not in KEYS)]:
        options = []
        if name in SETTINGS:
            options.append(_setting(SETTINGS[name]))
        if name in KEYS:
            options += [_ref(name), {"type": "array", "items": _ref(name), "minItems": 1, "description": "The choices."},
                        {"type": "string", "description": "A range (log(a,b), uniform(a,b), int(a,b)) or a comma list."}]
        properties[name] = {"anyOf": options}
    return {"type": "object", "description": "What to sweep: each key's choices or range, and the sweep's settings.",
            "properties": properties, "additionalProperties": False}


def _setting(setting) -> dict:
    if setting.is_int:
        typed = {"type": "integer", "minimum": setting.low, "maximum": setting.high}
    elif setting.choices:
        typed = {"type": "string", "enum": list(setting.choices)}
    else:
        typed = {"type": "string", "pattern": ecma_pattern(setting.pattern)}
    return {**typed, "description": setting.doc}


def ecma_pattern(pattern: str) -> str:
    """A Python pattern that must match a whole value (with DOTALL, as the schema matches) as a JSON Schema
    pattern, which may match anywhere: anchored at both ends, . as any character."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(END if pattern[i + 1] == "Z" else pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            end = pattern.index("]", i + 2)
            out.append(pattern[i:end + 1])
            i = end + 1
            continue
        out.append(r"[\s\S]" if c == "." else c)
        i += 1
    return "^(?:" + "".join(out) + ")" + END


def dumps() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
