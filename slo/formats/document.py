"""What a writer writes, whatever the format: values, ENV, SWEEP, bases and comments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..schema import SECTION_KEYS, SECTIONS, format_value
from ..statements import KEY, QUOTE, VALUE, is_interpolated
from ..trials import is_setting, setting_value
from .comments import Comments, block_lines


class Interpolated(str):
    """A string to write so that it is interpolated again when read (${key}, ${env:NAME}, $$).

    A plain str value is written to read back as exactly itself.
    """


@dataclass
class Document:
    values: dict[str, Any]  # key -> typed value, or Interpolated
    env: dict[str, str] = field(default_factory=dict)
    bases: list[str] = field(default_factory=list)
    comments: Comments = field(default_factory=Comments)
    # SWEEP, in the order written: key -> its text (a comma list such as 1e-3,3e-3, or a range such
    # as log(1e-4,1e-2); Interpolated or not, as values are), or a setting of the sweep's value (an int
    # for trials, seed, halving and rungs, a str for metric and goal)
    sweep: dict[str, str | int] = field(default_factory=dict)

    def sections(self) -> Iterator[tuple[str, list[str]]]:
        """(directive, its keys to write in schema order), for directives with any."""
        for section in SECTIONS:
            keys = [k for k in SECTION_KEYS[section] if k in self.values]
            if keys:
                yield section, keys


def from_config(config, only_set: bool = False, bases=()) -> Document:
    """The document of a resolved config: every key, or only those set somewhere, and its sweep (a swept
    key left out of the values: every trial sets it, and a file may not both set and sweep a key)."""
    values = {k: config[k] for k in config if (not only_set or config.is_set(k)) and k not in swept_keys(config)}
    return Document(values, config.env, [str(b) for b in bases], sweep=sweep_of(config))


def swept_keys(config) -> tuple[str, ...]:
    """The keys a resolved config sweeps."""
    return config.sweep.keys if config.sweep is not None else ()


def sweep_of(config) -> dict[str, str | int]:
    """A resolved config's SWEEP as a Document holds it (empty when it sweeps nothing)."""
    if config.sweep is None:
        return {}
    items = {a.key: a.item for a in config.sweep.definition.axes}
    return {key: sweep_text(items[key]) if key in items else value for key, value in config.sweep.pairs()}


def sweep_entry(item: tuple) -> str | int:
    """A SWEEP item as read (from any format) as a Document holds it: a setting as its int, a swept key as
    sweep_text."""
    if is_setting(item):
        return setting_value(item[KEY], item[VALUE])  # an int however written (20, 2e1), or a text: as trials.py
    return sweep_text(item)


def sweep_text(item: tuple) -> str:
    """A swept key's value as text that reads back as the same choices or range: Interpolated when it is
    read with interpolation (as a bare .config value is, and every TOML string), else a plain str read as
    written (single-quoted); a TOML array's values are joined with commas."""
    raw = item[VALUE]
    if type(raw) is not str:  # from TOML: an array of choices, or one
        choices = raw if isinstance(raw, (list, tuple)) else [raw]
        text = ",".join(v if type(v) is str else format_value(v) for v in choices)
        return Interpolated(text) if "$" in text else text
    return Interpolated(raw) if is_interpolated(raw, item[QUOTE]) else raw


def opening(doc: Document, bases_line: Callable[[list[str]], str]) -> list[str]:
    """The first lines of a written file: its header comments (and a blank line after them),
    then, when it has bases, the line that names them, bases_line(paths), with its comments."""
    comments = doc.comments
    out = block_lines(comments.header)
    if out:
        out.append("")
    if doc.bases:
        out += comments.lines_above("FROM")
        out.append(bases_line(doc.bases) + comments.after("FROM"))
    return out
