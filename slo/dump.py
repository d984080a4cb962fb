"""Writing a resolved Config out: the compact .config of ``slo show`` and flat JSON here,
TOML and .py by their writers in slo.formats."""

from __future__ import annotations

import json

from .formats import FORMATS
from .formats.config_lang import config_value, quote, sweep_word
from .formats.document import from_config, sweep_of, swept_keys
from .schema import SECTION_KEYS, SECTIONS, SWEEP

FORMAT_NAMES = ("config", "toml", "py", "json")


def selected(config, only_set: bool) -> dict[str, list[str]]:
    """The keys to write, by section, in schema order (not the swept ones: SWEEP says those)."""
    swept = swept_keys(config)
    return {s: [k for k in SECTION_KEYS[s] if (not only_set or config.is_set(k)) and k not in swept]
            for s in SECTIONS}


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
    if format in ("toml", "py"):
        return FORMATS["." + format].write(from_config(config, only_set, bases))
    raise ValueError(f"Unknown format {format!r}; use one of {', '.join(FORMAT_NAMES)}")


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
    if config.sweep is not None:
        out.append(_statement(SWEEP, [f"{k}={sweep_word(v)}" for k, v in sweep_of(config).items()]))
        out.append("".join(f"# {line.strip()}\n" for line in config.sweep.listing()))
    return "".join(out)
