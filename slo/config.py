"""The resolved config: immutable values, typed sections, and provenance."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from .schema import KEYS, SECTION_KEYS, SECTIONS, SHAPE_KEYS, TRAINING_ONLY_KEYS, format_value
from .source import CLI_PATH
from .statements import BARE, LINE, OVERRIDDEN, VALUE, VALUE_COL


@dataclass(frozen=True)
class Origin:
    """Where a final value came from, and the assignment it overrode."""

    kind: str  # "default", "file" or "cli"
    path: str = ""
    line: int = 0
    col: int = 0
    text: str = ""  # the value as written there
    overrode: Optional["Origin"] = None

    def __str__(self) -> str:
        if self.kind == "default":
            return "default"
        if self.kind == "cli":
            return "cli"
        return f"{self.path}:{self.line}:{self.col}" if self.line else self.path

    def chain(self) -> list["Origin"]:
        """This origin and every one it overrode, newest first."""
        out, o = [], self
        while o is not None:
            out.append(o)
            o = o.overrode
        return out


def _section_class(section: str):
    fields = [(name, KEYS[name].type | None if KEYS[name].optional else KEYS[name].type) for name in SECTION_KEYS[section]]
    cls = dataclasses.make_dataclass(section.title().replace("_", "") + "Config", fields, frozen=True)
    cls.__doc__ = f"The {section} keys of a resolved config (frozen)."
    return cls


# One frozen dataclass per directive, generated from the schema.
SECTION_CLASSES = {s: _section_class(s) for s in SECTIONS}


class Config(Mapping):
    """A resolved, validated config. Immutable.

    ``cfg["n_layer"]`` and ``cfg.model.n_layer`` read values; ``cfg.env`` is
    the ENV mapping; ``cfg.origin(key)`` says where a value came from
    (``cfg.origin("ENV.NAME")`` for an ENV value).
    """

    __slots__ = ("_values", "_env", "_provenance", "_sections", "warnings", "sweep")

    def __init__(self, values: dict, env: dict, provenance: dict, warnings: list = (), sweep=None):
        # Set through the slots' own descriptors (__setattr__ refuses): object.__setattr__ is slower.
        _set_values(self, values)
        _set_env(self, env)
        # key (or "ENV.NAME") -> its provenance entry (slo.statements); absent: default
        _set_provenance(self, provenance)
        _set_sections(self, {})
        _set_warnings(self, list(warnings))
        _set_sweep(self, sweep)  # a slo.trials.Sweep when the config has SWEEP items, else None

    def __setattr__(self, name, value):
        raise AttributeError("Config is immutable; use slo.load(..., overrides=[...]) to change a value")

    def __reduce__(self):  # pickled for the processes of a data-parallel run
        # Each provenance chain as a flat list: pickling the nested entries recurses once per assignment.
        flat = {key: _flatten(entry) for key, entry in self._provenance.items()}
        return (_unpickle, (self._values, self._env, flat, self.warnings, self.sweep))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other) -> bool:
        if isinstance(other, Config):
            return self._values == other._values and self._env == other._env
        return NotImplemented

    def __hash__(self):
        return hash((tuple(self._values.items()), tuple(sorted(self._env.items()))))

    def __getattr__(self, name: str):
        section = name.upper()
        if section in SECTION_CLASSES:
            cache = self._sections
            if section not in cache:
                cache[section] = SECTION_CLASSES[section](**{k: self._values[k] for k in SECTION_KEYS[section]})
            return cache[section]
        raise AttributeError(f"Config has no section {name!r}; sections: {', '.join(s.lower() for s in SECTIONS)}")

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._values.items() if k in self._provenance}
        return f"Config({changed!r}, env={self._env!r})"

    def derive(self, changes: dict, where: str) -> "Config":
        """A copy with changes (key -> typed value) made, each one's origin ``where`` (a weights file or
        model a run started from) over the value it replaces."""
        values = {**self._values, **changes}
        provenance = dict(self._provenance)
        for key, value in changes.items():
            provenance[key] = ((key, value, 0, 0, 0, 0, BARE), where, provenance.get(key))
        return Config(values, self._env, provenance, self.warnings)

    def with_sweep(self, sweep) -> "Config":
        """This config, carrying the sweep whose trials it is the common part of."""
        return Config(self._values, self._env, self._provenance, self.warnings, sweep)

    @property
    def env(self) -> dict:
        return dict(self._env)

    def to_dict(self) -> dict:
        """Every key's final value, flat (ENV not included: see ``env``)."""
        return dict(self._values)

    def is_set(self, key: str) -> bool:
        """True when the value was written somewhere (not the schema default)."""
        return key in self._provenance

    def origin(self, key: str) -> Origin:
        if key not in self._values and not (key.startswith("ENV.") and key[4:] in self._env):
            raise KeyError(key)
        return _origin(self._provenance.get(key))

    def origins(self) -> dict[str, list[str]]:
        """Where every value came from, as data: key (ENV values as ``ENV.NAME``) -> its origins,
        newest first (``path:line:col``, ``cli``), ending in ``default`` for a schema key."""
        out = {}
        for key in self._values:
            chain = [str(o) for o in self.origin(key).chain()]
            out[key] = chain if chain[-1] == "default" else chain + ["default"]
        for name in self._env:
            out["ENV." + name] = [str(o) for o in self.origin("ENV." + name).chain()]
        return out

    def explain(self) -> str:
        """Every value with where it came from, one line each."""
        lines = []
        init_from = self._values["init_from"]
        decided = set(SHAPE_KEYS) - set(TRAINING_ONLY_KEYS) if init_from != "scratch" else ()
        for section in SECTIONS:
            lines.append(f"[{section}]")
            for key in SECTION_KEYS[section]:
                line = _explain_line(key, format_value(self._values[key]), self.origin(key),
                                     format_value(KEYS[key].default))
                if key in decided and not self.is_set(key):
                    line += f" (the weights of init_from={init_from} decide it)"
                lines.append(line)
        if self._env:
            lines.append("[ENV]")
            for name, value in self._env.items():
                lines.append(_explain_line(name, value, self.origin("ENV." + name), None))
        return "\n".join(lines)


_set_values, _set_env, _set_provenance, _set_sections, _set_warnings, _set_sweep = (
    getattr(Config, name).__set__ for name in Config.__slots__)


def _flatten(entry) -> list:
    """A provenance chain as a list of (item, path), newest first."""
    out = []
    while entry is not None:
        out.append(entry[:OVERRIDDEN])
        entry = entry[OVERRIDDEN]
    return out


def _unpickle(values: dict, env: dict, flat: dict, warnings: list, sweep=None) -> Config:
    provenance = {}
    for key, assignments in flat.items():
        entry = None
        for item, path in reversed(assignments):
            entry = (item, path, entry)
        provenance[key] = entry
    return Config(values, env, provenance, warnings, sweep)


def _explain_line(key: str, value: str, origin: Origin, default_text: str | None) -> str:
    text = f"  {key} = {value}".ljust(40) + f"  # {origin}"
    older = [f"{o.text} from {o}" for o in origin.chain()[1:]]
    if default_text is not None and origin.kind != "default":
        older.append(f"{default_text} from default")
    if older:
        text += " (overrides " + ", ".join(older) + ")"
    return text


def _origin(entry) -> Origin:
    if entry is None:
        return Origin("default")
    entries = []  # newest first; built oldest first below, without recursion (chains can be long)
    while entry is not None:
        entries.append(entry)
        entry = entry[OVERRIDDEN]
    origin = None
    for item, path, _ in reversed(entries):
        kind = "cli" if path == CLI_PATH else "file"
        line, col = (item[LINE], item[VALUE_COL]) if item[LINE] else (0, 0)
        text = item[VALUE] if type(item[VALUE]) is str else format_value(item[VALUE])
        origin = Origin(kind, path, line, col, text, origin)
    return origin
