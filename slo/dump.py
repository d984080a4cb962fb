"""Writing a resolved Config out: .config and flat JSON here, TOML and .py in slo.formats."""

from __future__ import annotations

import json

from .schema import KEYS, SECTION_KEYS, SECTIONS, format_value

FORMATS = ("config", "toml", "py", "json")
_NOT_BARE = frozenset(" \t\r\f\v\n\"'$\\")


def quote(value: str) -> str:
    """value as a .config word: bare when it can be, else quoted so it reads back unchanged."""
    if value and value[0] != "#" and _NOT_BARE.isdisjoint(value):
        return value
    if "'" not in value and "\n" not in value and "\r" not in value:
        return f"'{value}'"  # single quotes: no escapes and no interpolation
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace("$", "\\$")
    return f'"{escaped}"'


def config_value(key: str, value) -> str:
    if KEYS[key].type is str and value is not None:
        return quote(value)
    return format_value(value)


def selected(config, only_set: bool) -> dict[str, list[str]]:
    """The keys to write, by section, in schema order."""
    return {s: [k for k in SECTION_KEYS[s] if not only_set or config.is_set(k)] for s in SECTIONS}


def dumps(config, format: str = "config", *, only_set: bool = False, bases=()) -> str:
    """config as text in a format: config, toml, py or json.

    only_set writes the keys set somewhere (not defaults); bases become FROM /
    extends (not for py and json, which are always flat).
    """
    if format == "config":
        return _dump_config(config, only_set, bases)
    if format == "json":
        flat = config.to_dict()
        flat.update({"ENV." + k: v for k, v in config.env.items()})
        return json.dumps(flat, indent=2) + "\n"
    if format == "toml":
        from .formats.toml import dump
        return dump(config, only_set=only_set, bases=bases)
    if format == "py":
        from .formats.legacy_py import dump
        return dump(config, only_set=only_set)
    raise ValueError(f"Unknown format {format!r}; use one of {', '.join(FORMATS)}")


def _statement(directive: str, pairs: list[str]) -> str:
    indent = " " * (len(directive) + 1)
    return directive + " " + (" \\\n" + indent).join(pairs) + "\n"


def _dump_config(config, only_set: bool, bases) -> str:
    out = []
    if bases:
        out.append("FROM " + " ".join(quote(b) for b in bases) + "\n\n")
    for section, keys in selected(config, only_set).items():
        if keys:
            out.append(_statement(section, [f"{k}={config_value(k, config[k])}" for k in keys]))
    if config.env:
        out.append(_statement("ENV", [f"{k}={quote(v)}" for k, v in config.env.items()]))
    return "".join(out)
