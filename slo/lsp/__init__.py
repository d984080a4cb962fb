"""``slo lsp``: a Language Server Protocol server for config files, over stdio.

Editors start it and speak LSP on its stdin and stdout: diagnostics from the
resolver (open documents, bases included, are read from the editor), completion,
hover with each value's origin, go to definition, document symbols, formatting
as ``slo fmt`` does it, and did-you-mean quick fixes. It never runs a ``.py``
config. The server needs pygls (``pip install 'slo[lsp]'``), imported only when
it runs.

The rooms: ``workspace`` (the open documents and what each resolves to),
``cursor`` (what is at a position of half-typed text), one module per feature,
and ``server`` (the pygls wiring).
"""

from __future__ import annotations

import argparse
import sys

INSTALL_HINT = "slo lsp needs pygls: pip install 'slo[lsp]'"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("--stdio", action="store_true",
                        help="speak LSP over stdin and stdout (the default and only transport; "
                             "editors' clients often pass it)")
    parser.epilog = "Needs pygls: pip install 'slo[lsp]'. Editors start it; see docs/authoring.md."


def run(ns, rest) -> int:
    try:
        import pygls  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    from .server import serve

    serve()
    return 0
