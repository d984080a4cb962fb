"""Picks the tokenizer (chain, read, scan, type_values): the Cython extension, or its pure-Python twin.

``SLO_NO_EXTENSIONS=1`` (read here and nowhere else) forces the twin; so does
an extension that failed to import, which ``EXTENSION_LOADED`` reports so
the test suite can insist on it.
"""

from __future__ import annotations

import os

from .errors import ConfigError, Diagnostic
from .statements import normalize

NO_EXTENSIONS = bool(os.environ.get("SLO_NO_EXTENSIONS"))

if NO_EXTENSIONS:
    from ._parser_py import chain, read, scan, type_values
    EXTENSION_LOADED = False
else:
    try:
        from ._parser import chain, read, scan, type_values  # type: ignore[no-redef]
        EXTENSION_LOADED = True
    except ImportError:  # not built (e.g. a source checkout): the twin still works
        from ._parser_py import chain, read, scan, type_values
        EXTENSION_LOADED = False

__all__ = ["scan", "read", "chain", "type_values", "tokenize", "EXTENSION_LOADED", "NO_EXTENSIONS"]


def tokenize(text: str, path: str = "<string>") -> list[tuple]:
    """The statements of a .config text; raises ConfigError on lexical errors."""
    statements, errors = scan(text)
    if errors:
        # Split as scan counts lines: at \n only (splitlines also splits at \f, \x1c, \u2028, ...).
        lines = normalize(text).split("\n")
        raise ConfigError([
            Diagnostic(path, line, col, msg, end_col, source=lines[line - 1] if line <= len(lines) else "")
            for line, col, end_col, msg in errors])
    return statements
