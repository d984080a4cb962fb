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


# ---------------------------------------------------------------- the runner's rooms

RUNNER = PACKAGE / "runner"
MAX_RUNNER_MODULES = 12  # directly in slo/runner/; the rest live in its sub-packages, one job each
RUNNER_ROOMS = {"model", "data", "prepare", "checkpoint", "distributed", "hf", "metrics"}
MAX_TRAINER_LINES, MAX_TRAIN_LINES = 250, 35


def test_the_runner_keeps_few_modules_of_its_own():
    own = sorted(p.name for p in RUNNER.glob("*.py"))
    assert len(own) <= MAX_RUNNER_MODULES, own


def test_the_runner_s_sub_packages_are_its_rooms_each_said_in_one_docstring():
    rooms = {p.name for p in RUNNER.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert rooms == RUNNER_ROOMS
    for room in rooms:
        init = RUNNER / room / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"{init} says what the room holds"


def functions_taking(name: str, annotation: str) -> list[str]:
    """Functions outside slo/runner/trainer.py with a parameter called name or annotated as annotation."""
    found = []
    for path in sources():
        if path == RUNNER / "trainer.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                    if arg.arg == name or (arg.annotation is not None and annotation in ast.unparse(arg.annotation)):
                        found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_function_outside_the_trainer_takes_the_trainer():
    """The trainer's collaborators are made from explicit parts; none reaches into a Trainer."""
    assert functions_taking("trainer", "Trainer") == []


def test_the_trainer_reads_in_one_sitting():
    tree = ast.parse((RUNNER / "trainer.py").read_text(encoding="utf-8"))
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Trainer")
    train = next(n for n in trainer.body if isinstance(n, ast.FunctionDef) and n.name == "train")
    assert trainer.end_lineno - trainer.lineno + 1 <= MAX_TRAINER_LINES
    assert train.end_lineno - train.lineno + 1 <= MAX_TRAIN_LINES
    handles = {t.attr for n in ast.walk(trainer) if isinstance(n, ast.Assign) for t in n.targets
               if isinstance(t, ast.Attribute) and "model" in t.attr}
    assert handles == {"model"}, handles  # one model; what compiling and wrapping make of it is self.forwards


def look_alike(stem: str) -> str:
    """A name as a reader confuses it: case, a plural, an -er or -ing ending, and a package's own name aside."""
    word = stem.lower()
    for ending in ("s", "er", "ing", "ion"):
        if word.endswith(ending) and len(word) > len(ending) + 3:
            word = word[:-len(ending)]
    return word


def test_no_two_rooms_have_names_that_can_be_mistaken_for_one_another():
    rooms: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            rooms.setdefault(look_alike(path.stem), []).append(str(path.relative_to(PACKAGE.parent)))
    for path in PACKAGE.rglob("__init__.py"):
        folder = path.parent
        if folder != PACKAGE:
            names = rooms.setdefault(look_alike(folder.name), [])
            # a module named for its own package (checkpoint/checkpointer.py) is that package's heart, not a twin
            names[:] = [n for n in names if not n.startswith(str(folder.relative_to(PACKAGE.parent)) + "/")]
            names.append(str(folder.relative_to(PACKAGE.parent)) + "/")
    twins = {word: names for word, names in rooms.items() if len(names) > 1}
    assert not twins, twins


def test_the_look_alike_check_sees_the_pairs_it_is_for():
    assert look_alike("tokenizer") == look_alike("tokenizers")
    assert look_alike("source") == look_alike("sources")
    assert look_alike("train") == look_alike("trainer")
    assert look_alike("sharded") != look_alike("fsdp")


CRASH_SAFE = ("os.fsync", "os.replace", "os.rename")


def test_crash_safe_writing_has_one_home():
    """Replacing a file or a folder, and syncing it, is slo.atomic's: nowhere else calls fsync or renames."""
    found = []
    for path in sources():
        if path == PACKAGE / "atomic.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in CRASH_SAFE:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node.func)}")
    allowed = {"slo/runner/metrics/runlog.py"}  # moves an earlier run's metrics aside: a rename, not a write
    assert [f for f in found if f.split(":")[0] not in allowed] == []
