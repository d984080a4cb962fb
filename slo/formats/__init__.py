"""The config formats, by file extension: how each is read, how its comments are read, how it is written.

Every reader takes (text, path) and returns a ``slo.source.Source``; a
writer takes a ``slo.formats.document.Document`` and returns the file's text.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..source import Source
from . import config_lang, legacy_py, toml, trusted_py
from .comments import Comments
from .document import Document


class Format(NamedTuple):
    read: Callable[[str, str], Source]  # never runs anything
    read_comments: Callable[[str], Comments]
    write: Callable[[Document], str]
    read_trusted: Callable[[str, str], Source] | None = None  # runs the file (--trust-py), where the format can


FORMATS: dict[str, Format] = {
    ".config": Format(config_lang.read_config, config_lang.read_comments, config_lang.write),
    ".toml": Format(toml.read, toml.read_comments, toml.write),
    ".py": Format(legacy_py.read, legacy_py.read_comments, legacy_py.write, trusted_py.read_trusted),
}


def reader(ext: str, trust_py: bool = False) -> Callable[[str, str], Source] | None:
    """The reader of files with extension ext (lower case, with its dot), or None for an unknown one.

    trust_py picks the reader that runs the file, where the format has one.
    """
    fmt = FORMATS.get(ext)
    if fmt is None:
        return None
    return fmt.read_trusted if trust_py and fmt.read_trusted is not None else fmt.read
