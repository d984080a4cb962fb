"""The package's shape: every module imports on its own, imports point one way, rooms stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "slo"
TWINS = {"_parser_py.py", "_parser.pyx"}  # the tokenizer twins, kept as one flat scan each
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyx")])}


def imported_modules(name: str, path: Path) -> set[str]:
    """The slo modules a module imports, at the top or inside a function alike.

    ``from X import y`` counts as importing X.y when that is a module, else X.
    """
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".pyx":  # Cython: its Python-level imports are plain lines
        text = "\n".join(line for line in text.split("\n") if line.startswith(("import ", "from .")))
    tree = ast.parse(text)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            targets = [node.args[0].value]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # import slo.a.b.c: the deepest module named
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_imports_point_one_way():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    cycles = []
    while True:
        cycle = find_cycle(graph)
        if cycle is None:
            break
        cycles.append(" -> ".join(cycle))
        graph[cycle[-2]].discard(cycle[-1])  # report every cycle, not only the first
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


IMPORT_EACH = (
    "import importlib, os, sys, traceback\n"
    "import numpy, torch\n"
    "failed = []\n"
    "for name in sys.argv[1:]:\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        try:\n"
    "            importlib.import_module(name)\n"
    "        except BaseException:\n"
    "            traceback.print_exc()\n"
    "            os._exit(1)\n"
    "        os._exit(0)\n"
    "    if os.waitpid(pid, 0)[1]:\n"
    "        failed.append(name)\n"
    "print('FAILED', ' '.join(failed))\n"
)


def modules_that_fail_alone(names: list[str], cwd: Path) -> list[str]:
    """The modules among names that fail to import when each is imported first, in a fresh process
    (forked after the third-party imports, which every module may share)."""
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH, *names], capture_output=True, text=True,
                            timeout=300, cwd=cwd)
    assert result.returncode == 0 and result.stdout.startswith("FAILED"), result.stderr
    return result.stdout.split()[1:]


def test_every_module_imports_on_its_own():
    """No module relies on another having been imported before it."""
    names = sorted(n for n in MODULES if not n.endswith("__main__") and MODULES[n].suffix == ".py")
    assert modules_that_fail_alone(names, PACKAGE.parent) == []


def test_the_import_check_sees_a_module_that_fails_alone(tmp_path):
    (tmp_path / "fine_mod.py").write_text("import json\n")
    (tmp_path / "broken_mod.py").write_text("import slo.no_such_module\n")
    assert modules_that_fail_alone(["fine_mod", "broken_mod"], tmp_path) == ["broken_mod"]


def sources() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name not in TWINS]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_rooms_stay_small(path):
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.name} has {lines} lines"
    long = [f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in {path.name}: {long}"
