"""What a writer writes, whatever the format: values, ENV, bases and comments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..schema import SECTION_KEYS, SECTIONS
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

    def sections(self) -> Iterator[tuple[str, list[str]]]:
        """(directive, its keys to write in schema order), for directives with any."""
        for section in SECTIONS:
            keys = [k for k in SECTION_KEYS[section] if k in self.values]
            if keys:
                yield section, keys


def from_config(config, only_set: bool = False, bases=()) -> Document:
    """The document of a resolved config: every key, or only those set somewhere."""
    values = {k: config[k] for k in config if not only_set or config.is_set(k)}
    return Document(values, config.env, [str(b) for b in bases])


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
