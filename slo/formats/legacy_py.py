"""nanoGPT-style .py configs: read without running them, and written back.

Reading walks the file's syntax tree and evaluates only what nanoGPT's own
config files use: top-level ``name = expression`` statements, comments,
``import time`` / ``import math``, literals, arithmetic, string
concatenation, ``str()`` / ``int()`` / ``float()``, ``time.time()``, and names
assigned earlier in the file. Anything else is an error at its line that
names ``--trust-py``, which runs the file as Python with nanoGPT's semantics
instead (``slo.formats.trusted_py``).

- A name starting with ``_`` is the file's own helper, not a key.
- Strings mean what they say in Python: they are never interpolated (``$``
  is a ``$``), so nanoGPT and slo read a file the same way.
- ENV is written, and read, as ``import os`` and ``os.environ["NAME"] =
  "value"``: executed by nanoGPT, it sets the variable.
- A value that comes from ``time.time()`` is flagged: the run cannot be
  reproduced from the file.

Writing emits ``name = value`` lines grouped under a ``# SECTION`` comment,
each value a literal of exactly the key's type (``1.0``, not ``1``, for a
float), so nanoGPT's ``configurator.py`` loads the file unchanged. nanoGPT
has no sweeps: a document's SWEEP is written only as a comment saying so
(slo-convert refuses to write a config that sweeps to .py).
"""

from __future__ import annotations

import ast
import time
from typing import Any

from ..schema import DEFAULTS, ENV_NAME, KEYS, SECTIONS, format_value, suggest
from ..source import Source
from ..statements import END_COL, KEY, KEY_COL, LINE, SINGLE, VALUE_COL, normalize
from .comments import Comments, block_lines, extract, source_lines
from .config_lang import sweep_word
from .document import Document

TRUST_HINT = "use --trust-py to run the file as Python, as nanoGPT does"
VOLATILE = " comes from time.time()"  # the warning for a key whose value changes on every read
MODULES = ("time", "math", "os")  # os only for os.environ[NAME] = value
MAX_INT_BITS = 4096
MAX_STR_LEN = 100_000
_GROUP_COMMENTS = frozenset(SECTIONS + ("ENV",))

_OPERATORS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a ** b,
}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Not: lambda a: not a}
_CONVERSIONS = {"str": str, "int": int, "float": float}
SCALARS = (int, float, str, bool, type(None))  # the types of config values

# What the reader calls the constructs it refuses.
_STATEMENTS = {
    ast.FunctionDef: "A function definition", ast.AsyncFunctionDef: "A function definition",
    ast.ClassDef: "A class definition", ast.For: "A loop", ast.AsyncFor: "A loop", ast.While: "A loop",
    ast.If: "An if statement", ast.With: "A with statement", ast.AsyncWith: "A with statement",
    ast.Try: "A try statement", ast.ImportFrom: "from ... import", ast.Delete: "del", ast.Global: "global",
    ast.Nonlocal: "nonlocal", ast.Raise: "raise", ast.Assert: "assert", ast.Return: "return",
    ast.Match: "A match statement",
}
_EXPRESSIONS = {
    ast.List: "A list", ast.Tuple: "A tuple", ast.Dict: "A dict", ast.Set: "A set",
    ast.Compare: "A comparison", ast.BoolOp: "and / or", ast.IfExp: "A conditional expression",
    ast.Subscript: "Indexing", ast.Lambda: "A lambda", ast.JoinedStr: "An f-string (write 'a' + str(x))",
    ast.ListComp: "A comprehension", ast.SetComp: "A comprehension", ast.DictComp: "A comprehension",
    ast.GeneratorExp: "A generator", ast.Starred: "Unpacking", ast.NamedExpr: "The := operator",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "A slice",
}


class _Refused(Exception):
    """A construct the reader does not evaluate; message says what and how to go on."""

    def __init__(self, node: ast.AST, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


class _Failed(Exception):
    """A name whose value already had an error: nothing more to report."""


class Places:
    """1-based character columns of AST nodes, whose offsets count UTF-8 bytes."""

    def __init__(self, body: str):
        self.lines = body.split("\n")

    def col(self, line: int, offset: int) -> int:
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return len(text.encode("utf-8")[:offset].decode("utf-8", "ignore")) + 1

    def span(self, node: ast.AST) -> tuple[int, int, int]:
        """(line, col, end_col) of node, end_col on node's first line."""
        line = node.lineno
        col = self.col(line, node.col_offset)
        if node.end_lineno == line:
            end = self.col(line, node.end_col_offset)
        else:
            end = len(self.lines[line - 1]) + 1
        return line, col, max(end, col + 1)

    def item(self, name: str, value: Any, target: ast.AST, value_node: ast.AST) -> tuple:
        line, key_col, key_end = self.span(target)
        _, value_col, end_col = self.span(value_node)
        if value_node.lineno != line:
            value_col, end_col = key_col, key_end
        return (name, value, line, key_col, value_col, end_col, SINGLE)


class _Reader:
    def __init__(self, src: Source, body: str):
        self.src = src
        self.places = Places(body)
        self.names: dict[str, Any] = {}
        self.modules: dict[str, str] = {}  # name in the file -> module
        self.failed: set[str] = set()
        self.volatile: set[str] = set()  # names whose value comes from time.time()
        self.seen: dict = {}
        self.uses_clock = False

    def refuse(self, node: ast.AST, what: str) -> None:
        raise _Refused(node, f"{what} cannot be read without running the file: {TRUST_HINT}")

    # ---- statements ---------------------------------------------------------

    def statement(self, node: ast.stmt) -> None:
        try:
            if isinstance(node, ast.Assign):
                self.assign(node.targets, node.value)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                self.assign([node.target], node.value)
            elif isinstance(node, ast.AugAssign):
                self.assign([node.target], ast.BinOp(node.target, node.op, node.value, **_where(node.value)))
            elif isinstance(node, ast.Import):
                self.imports(node)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and type(node.value.value) is str:
                pass  # a docstring
            elif isinstance(node, ast.Pass):
                pass
            elif isinstance(node, ast.Expr):
                self.refuse(node, f"An expression statement ({_shown(node.value)})")
            else:
                self.refuse(node, _STATEMENTS.get(type(node), f"A {type(node).__name__} statement"))
        except _Refused as e:
            line, col, end = self.places.span(e.node)
            self.src.error(line, col, end, e.message)
        except _Failed:
            pass

    def imports(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in MODULES:
                self.refuse(node, f"import {alias.name} (only time and math can be imported)")
            self.modules[alias.asname or alias.name] = alias.name
            self.names.pop(alias.asname or alias.name, None)

    def assign(self, targets: list[ast.expr], value_node: ast.expr) -> None:
        for target in targets:
            if not (isinstance(target, ast.Name) or self.environ_target(target)):
                self.refuse(target, f"Assigning to {_shown(target)}")
        self.uses_clock = False
        try:
            value = self.value(value_node)
            failed = False
        except _Failed:
            value, failed = None, True
        except _Refused:
            for target in targets:
                if isinstance(target, ast.Name):
                    self.failed.add(target.id)
                    self.names.pop(target.id, None)
            raise
        volatile = self.uses_clock
        for target in targets:
            if isinstance(target, ast.Name):
                self.bind(target, value, value_node, failed, volatile)
            elif not failed:
                self.environ(target, value, value_node)

    def bind(self, target: ast.Name, value: Any, value_node: ast.expr, failed: bool, volatile: bool) -> None:
        name = target.id
        self.modules.pop(name, None)
        self.volatile.discard(name)
        if volatile:
            self.volatile.add(name)
        if failed:
            self.failed.add(name)
            self.names.pop(name, None)
        else:
            self.failed.discard(name)
            self.names[name] = value
        if name.startswith("_") or failed:
            return
        item = self.places.item(name, value, target, value_node)
        add_assignment(self.src, item, self.seen)
        if volatile and name in KEYS:
            self.src.warnings.append(self.src.diag(item[LINE], item[VALUE_COL], item[END_COL], (
                f"{name}{VOLATILE}: it changes on every read, so the run is not"
                " reproducible; write a fixed value to make it so"), "warning"))

    def environ_target(self, target: ast.expr) -> bool:
        """True for os.environ[...] (with os imported)."""
        return (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute)
                and target.value.attr == "environ" and isinstance(target.value.value, ast.Name)
                and self.modules.get(target.value.value.id) == "os")

    def environ(self, target: ast.Subscript, value: Any, value_node: ast.expr) -> None:
        name = self.value(target.slice)
        where = self.places.span(target.slice)
        if type(name) is not str or not ENV_NAME.match(name):
            self.src.error(*where, f"Invalid ENV name {name!r}: use letters, digits and _, not starting with a digit")
        elif type(value) is not str:
            self.src.error(*self.places.span(value_node),
                           f"os.environ[{name!r}] must be a string, not {format_value(value)}: quote it")
        else:
            line, key_col, _ = self.places.span(target)
            _, value_col, end_col = self.places.span(value_node)
            item = (name, value, line, key_col, value_col, end_col, SINGLE)
            self.src.note_twice("ENV." + name, item, self.seen)
            self.src.env.append(item)

    # ---- expressions --------------------------------------------------------

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, SCALARS):
                self.refuse(node, f"A {type(node.value).__name__} literal")
            if type(node.value) is int and node.value.bit_length() > MAX_INT_BITS:  # 0x... of any length parses
                raise _Refused(node, "An integer literal too large for a config value")
            return node.value
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            op = _OPERATORS.get(type(node.op))
            if op is None:
                self.refuse(node, f"The operator in {_shown(node)}")
            left, right = self.value(node.left), self.value(node.right)
            self.check_size(node, left, right, type(node.op))
            return self.checked(node, lambda: op(left, right))
        if isinstance(node, ast.UnaryOp):
            op = _UNARY.get(type(node.op))
            if op is None:
                self.refuse(node, f"The operator in {_shown(node)}")
            operand = self.value(node.operand)
            return self.checked(node, lambda: op(operand))
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            self.refuse(node, f"Attribute access ({_shown(node)}; only time.time() is read)")
        self.refuse(node, _EXPRESSIONS.get(type(node), f"A {type(node).__name__} expression"))

    def name(self, node: ast.Name) -> Any:
        name = node.id
        if name in self.names:
            if name in self.volatile:
                self.uses_clock = True
            return self.names[name]
        if name in self.failed:
            raise _Failed
        if name in self.modules:
            self.refuse(node, f"Using the module {name} as a value")
        if name in KEYS:
            raise _Refused(node, (
                f"{name} is not assigned earlier in this file: assign it first, or {TRUST_HINT}"
                f" (there {name} starts at its default, {format_value(DEFAULTS[name])})"))
        raise _Refused(node, f"Unknown name {name}{suggest(name, self.names)}: use a name assigned earlier"
                             f" in this file, or {TRUST_HINT}")

    def call(self, node: ast.Call) -> Any:
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "time" and isinstance(func.value, ast.Name)
                and self.modules.get(func.value.id) == "time"):
            if node.args or node.keywords:
                self.refuse(node, "time.time() with arguments")
            self.uses_clock = True
            return time.time()
        if (isinstance(func, ast.Attribute) and func.attr == "time" and isinstance(func.value, ast.Name)
                and func.value.id == "time" and "time" not in self.modules):
            raise _Refused(node, "time.time() needs `import time` before it")
        if isinstance(func, ast.Name) and func.id in _CONVERSIONS and func.id not in self.names:
            if len(node.args) != 1 or node.keywords or isinstance(node.args[0], ast.Starred):
                self.refuse(node, f"{func.id}() with other than one argument")
            arg = self.value(node.args[0])
            if func.id == "int" and type(arg) is str and len(arg) > 1000:
                raise _Refused(node, f"int() of a {len(arg)}-character string: the number is too large")
            return self.checked(node, lambda: _CONVERSIONS[func.id](arg))
        self.refuse(node, f"A call to {_shown(func)}() (only str(), int(), float() and time.time() are read)")

    def check_size(self, node: ast.BinOp, left: Any, right: Any, op: type) -> None:
        """Refuse an operation whose result would be too big to be a config value."""
        ints = type(left) in (int, bool) and type(right) in (int, bool)
        if op is ast.Pow and ints and right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_INT_BITS:
            raise _Refused(node, f"{_shown(node)} is too large a number for a config value")
        if op is ast.Mod and type(left) is str:
            self.refuse(node, f"String formatting with % ({_shown(node)}; write 'a' + str(x))")
        if op is ast.Mult:
            for text, times in ((left, right), (right, left)):
                if type(text) is str and type(times) in (int, bool) and len(text) * times > MAX_STR_LEN:
                    raise _Refused(node, f"{_shown(node)} is too long a string for a config value")

    def checked(self, node: ast.expr, compute) -> Any:
        """compute(), with Python's errors turned into one at node."""
        try:
            result = compute()
        except OverflowError:
            raise _Refused(node, f"{_shown(node)} is too large a number for a config value") from None
        except (ArithmeticError, TypeError, ValueError) as e:
            raise _Refused(node, f"Cannot evaluate {_shown(node)}: {e}") from None
        if type(result) is complex:
            raise _Refused(node, f"{_shown(node)} is a complex number, not a config value")
        if type(result) is int and result.bit_length() > MAX_INT_BITS:
            raise _Refused(node, f"{_shown(node)} is too large a number for a config value")
        if type(result) is str and len(result) > MAX_STR_LEN:
            raise _Refused(node, f"{_shown(node)} is too long a string for a config value")
        return result


def add_assignment(src: Source, item: tuple, seen: dict) -> None:
    """Keep an assignment of a key; any other name is an error, with a suggestion."""
    name = item[KEY]
    if name in KEYS:
        src.add(item, None, seen)
    else:
        hint = suggest(name, KEYS) or f" (a helper's name starts with _: _{name})"
        src.error(item[LINE], item[KEY_COL], item[KEY_COL] + len(name), f"Unknown key {name}{hint}")


def _where(node: ast.AST) -> dict:
    return {k: getattr(node, k) for k in ("lineno", "col_offset", "end_lineno", "end_col_offset")}


def _shown(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except ValueError:  # a constant past Python's int-string limit
        return "an expression with a very large number"
    return text if len(text) <= 60 else text[:57] + "..."


def _syntax_error(src: Source, e: SyntaxError) -> None:
    line = e.lineno or 1
    col = e.offset or 1
    end = e.end_offset if e.end_lineno == line and e.end_offset and e.end_offset > col else col + 1
    src.error(line, col, end, f"Python syntax error: {e.msg}")


def parse(text: str, path: str) -> tuple[Source, str, ast.Module | None]:
    """The Source of a .py text (its values still to add), the text as read, and its
    syntax tree (None when it has none, the error in the Source)."""
    src = Source(path, text)
    body = normalize(text)
    return src, body, _tree(src, body)


def _tree(src: Source, body: str) -> ast.Module | None:
    try:
        return ast.parse(body, filename=src.path)
    except SyntaxError as e:
        _syntax_error(src, e)
    except ValueError as e:  # null bytes
        src.error(1, 1, 2, f"Cannot parse the file as Python: {e}")
    except (RecursionError, MemoryError):
        src.error(1, 1, 2, "The file is nested too deeply to read")
    return None


def read(text: str, path: str) -> Source:
    """A legacy .py config as a Source, without running it."""
    src, body, tree = parse(text, path)
    if tree is None:
        return src
    reader = _Reader(src, body)
    for node in tree.body:
        try:
            reader.statement(node)
        except RecursionError:
            src.error(node.lineno, 1, 2, "An expression nested too deeply to read")
    return src


# ---- comments and writing -----------------------------------------------------

def read_comments(text: str) -> Comments:
    body = normalize(text)
    try:
        tree = ast.parse(body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Comments()
    places = Places(body)
    anchors = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if isinstance(target, ast.Name):
                name = target.id
            elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                name = f"ENV.{target.slice.value}"
            else:
                continue
            anchors.append((name, node.lineno, node.end_lineno, places.col(node.end_lineno, node.end_col_offset)))
    return extract(source_lines(text), anchors, generated=lambda c: c.strip() in _GROUP_COMMENTS)


def write(doc: Document) -> str:
    comments = doc.comments
    out = block_lines(comments.header)
    for section, keys in doc.sections():
        if out:
            out.append("")
        out.append(f"# {section}")
        for key in keys:
            out += comments.lines_above(key)
            out.append(f"{key} = {doc.values[key]!r}{comments.after(key)}")  # repr: 1.0 for a float, never 1
    if doc.env:
        if out:
            out.append("")
        out += ["# ENV", "import os"]
        for name, value in doc.env.items():
            out += comments.lines_above("ENV." + name)
            out.append(f"os.environ[{name!r}] = {str(value)!r}{comments.after('ENV.' + name)}")
    if doc.sweep:  # slo show of a config that sweeps: said, as nothing here can hold it
        if out:
            out.append("")
        out += ["# SWEEP " + " ".join(f"{k}={sweep_word(v)}" for k, v in doc.sweep.items()),
                "# (not in this file: nanoGPT has no sweeps; slo sweep runs it from a .config or .toml)"]
    if comments.footer:
        out += [""] + block_lines(comments.footer)
    return "\n".join(out) + "\n" if out else ""
