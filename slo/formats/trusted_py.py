"""``--trust-py``: a nanoGPT-style .py config run as Python, as nanoGPT runs it.

The file executes in a namespace seeded with the defaults, as nanoGPT's
configurator does; the keys it assigns become the Source's values, checked
like any other, and the environment variables it sets become its ENV (the
process's environment is put back). Items have the places of the
assignments that set them (line 0 for a key set some other way). For files
you trust only: ``slo.formats.legacy_py`` reads them without running them.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import math
import os
import sys
import time
import traceback
from typing import Any

from ..schema import DEFAULTS, ENV_NAME, KEYS
from ..source import Source
from ..statements import SINGLE
from .legacy_py import SCALARS, Places, add_assignment, parse


def _assignments(tree: ast.Module) -> dict[str, tuple[ast.Name, ast.stmt]]:
    """(name node, statement) of the last assignment of each module-level name
    (outside functions, classes and comprehensions)."""
    found: dict[str, tuple[ast.Name, ast.stmt]] = {}
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
              ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

    def visit(node: ast.AST, statement: ast.stmt) -> None:
        if isinstance(node, scopes):
            return
        if isinstance(node, ast.stmt):
            statement = node
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found[node.id] = (node, statement)
        for child in ast.iter_child_nodes(node):
            visit(child, statement)

    for node in tree.body:
        visit(node, node)
    return found


def read_trusted(text: str, path: str) -> Source:
    """A legacy .py config run as Python (see the module's docstring)."""
    src, body, tree = parse(text, path)
    if tree is None:
        return src
    places = Places(body)
    namespace: dict[str, Any] = {k: v for k, v in DEFAULTS.items() if v is not None}
    initial = dict(namespace)
    # What nanoGPT's train.py has imported when it runs a config file.
    namespace.update(__builtins__=builtins, __name__="__main__", os=os, time=time, math=math)
    environ = dict(os.environ)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            exec(compile(tree, path, "exec"), namespace)
    except (Exception, SystemExit) as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        line = frames[-1].lineno if frames and frames[-1].lineno else 1
        src.error(line, 1, len(places.lines[line - 1]) + 1 if line <= len(places.lines) else 2,
                  f"Running the file failed: {type(e).__name__}: {e}")
        return src
    finally:
        changed = {k: v for k, v in os.environ.items() if environ.get(k) != v}
        os.environ.clear()
        os.environ.update(environ)
    assigned = _assignments(tree)
    seen: dict = {}
    for name, value in namespace.items():
        if name.startswith("_") or not (name in assigned or (name in initial and value is not initial[name])):
            continue
        target, statement = assigned.get(name, (None, None))
        plain = isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign))
        if name not in KEYS and not (plain and isinstance(value, SCALARS)):
            continue  # the file's own functions, modules, objects and loop variables
        if target is None:
            item = (name, value, 0, 0, 0, 0, SINGLE)
        elif plain and statement.value is not None:
            item = places.item(name, value, target, statement.value)
        else:
            item = places.item(name, value, target, target)
        add_assignment(src, item, seen)
    for name, value in changed.items():
        if ENV_NAME.match(name):
            src.env.append((name, value, 0, 0, 0, 0, SINGLE))
    return src
