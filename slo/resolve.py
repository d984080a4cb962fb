"""Reading config files and resolving them into a validated Config.

Precedence, lowest first: schema defaults, FROM bases (in the order written,
each resolved recursively), the file's own statements, command-line
overrides. Interpolation runs after merging and before typing; then every
value is typed and checked by the schema, then the cross-field rules run.
Every problem found on the way is collected, so one ConfigError reports
them all.

An *item* is the tokenizer's tuple ``(key, value, line, key_col, value_col,
end_col, quote)``; TOML and ``.py`` readers make the same tuples, with typed
values. A *provenance entry* is ``(item, path, entry it overrode or None)``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable

from .config import Config
from .errors import ConfigError, Diagnostic
from .schema import (CONVERT, DIRECTIVES, ENV_NAME, KEYS, RULES, SECTION_KEYS, SECTIONS,
                     format_value, suggest)
from .tokenizer import chain as chain_entries
from .tokenizer import read, type_values

MAX_DEPTH = 32
CLI_PATH = "<command line>"
STRING_PATH = "<string>"
_FAILED = object()  # a value whose error is already reported


class Source:
    """One file, read: its bases, its assignments in order, and its problems."""

    __slots__ = ("path", "text", "bases", "sets", "env", "entries", "env_entries", "errors", "warnings", "_lines")

    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.bases: list[tuple] = []  # (written path, line, col, end_col, quote)
        self.sets: list[tuple] = []
        self.env: list[tuple] = []
        self.entries: dict | None = None  # chain_entries of sets and env, where the reader made them
        self.env_entries: dict | None = None
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self._lines: list[str] | None = None

    def diag(self, line: int, col: int, end_col: int, message: str, severity: str = "error") -> Diagnostic:
        if self._lines is None:
            self._lines = self.text.replace("\r\n", "\n").lstrip("\ufeff").split("\n")
        source = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        return Diagnostic(self.path, line, col, message, end_col, severity, source)

    def error(self, line: int, col: int, end_col: int, message: str) -> None:
        self.errors.append(self.diag(line, col, end_col, message))

    def add(self, item: tuple, section: str | None, seen: dict) -> None:
        """Check that item's key exists and lives in section (None: anywhere), then keep it."""
        key = item[0]
        spec = KEYS.get(key)
        if spec is None:
            self.error(item[2], item[3], item[4] - 1, f"Unknown key {key}{suggest(key, KEYS)}")
        elif section is not None and spec.section != section:
            self.error(item[2], item[3], item[4] - 1, f"{key} belongs to {spec.section}, not {section}")
        else:
            self.note_twice(key, item, seen)
            self.sets.append(item)

    def note_twice(self, name: str, item: tuple, seen: dict) -> None:
        """Warn when name was set before in this file (seen: name -> first item)."""
        first = seen.get(name)
        if first is not None:
            self.warn_twice(name, item, first)
        seen[name] = item

    def warn_twice(self, name: str, item: tuple, first: tuple) -> None:
        if item[2]:
            self.warnings.append(self.diag(item[2], item[3], item[5], (
                f"{name} is set twice in this file (first at {self.path}:{first[2]}:{first[3]}); the later value wins"),
                "warning"))


def read_config(text: str, path: str) -> Source:
    """A .config text as a Source."""
    src = Source(path, text)
    src.bases, src.sets, src.env, problems, errors, src.entries, src.env_entries = read(text, path)
    for line, col, end_col, message in errors:
        src.error(line, col, end_col, message)
    for kind, (directive, line, col, _), item in problems:
        if kind == "late-from":
            src.error(line, col, col + 4, "FROM must come before every other directive")
        elif kind == "directive":
            src.error(line, col, col + len(directive), f"Unknown directive {directive}"
                      f"{suggest(directive, DIRECTIVES) or ' (directives: ' + ', '.join(DIRECTIVES) + ')'}")
        elif kind == "key":
            src.add(item, directive, {})
        else:  # set twice: the first assignment is the earliest item of that name
            items = src.env if directive == "ENV" else src.sets
            first = next(i for i in items if i[0] == item[0])
            src.warn_twice("ENV." + item[0] if directive == "ENV" else item[0], item, first)
    return src


def _reader(ext: str, trust_py: bool = False) -> Callable[[str, str], Source] | None:
    if ext == ".config":
        return read_config
    if ext == ".toml":
        from .formats.toml import read
        return read
    if ext == ".py":
        from .formats.legacy_py import read, read_trusted
        return read_trusted if trust_py else read
    return None


def cli_source(overrides: Iterable[str]) -> Source:
    """Command-line overrides (``--key=value``, ``--SECTION.key=value``) as a Source.

    The arguments, joined by spaces, are its one line, so errors point at them.
    """
    overrides = [str(a) for a in overrides]
    src = Source(CLI_PATH, " ".join(overrides))
    seen: dict = {}
    col = 1
    for arg in overrides:
        body = arg[2:] if arg.startswith("--") else arg
        start = col + len(arg) - len(body)
        name, eq, value = body.partition("=")
        section, dot, key = name.rpartition(".")
        item = (key, value, 1, start, start + len(name) + 1, start + len(body), 0)
        if not eq or not key:
            src.error(1, col, col + len(arg), f"Expected --key=value or --SECTION.key=value, found {arg!r}")
        elif not dot:
            src.add(item, None, seen)
        elif section.upper() == "ENV":
            if ENV_NAME.match(key):
                src.env.append(item)
            else:
                src.error(1, start, start + len(name), f"Invalid ENV name {key!r}")
        elif section.upper() in SECTION_KEYS:
            src.add(item, section.upper(), seen)
        else:
            src.error(1, start, start + len(section),
                      f"Unknown section {section}{suggest(section.upper(), SECTIONS + ('ENV',))}")
        col += len(arg) + 1
    return src


def _splice(entry, below):
    """entry's override chain, continued by below's; an assignment already in it is not repeated.

    Iterative, and without repeats: chains stay as long as the assignments are many,
    however often the same base is reached (FROM a a, diamonds).
    """
    if below is None:
        return entry
    if entry is None:
        return below
    chain, seen = [], set()
    for e in (entry, below):
        while e is not None:
            if id(e[0]) not in seen:
                seen.add(id(e[0]))
                chain.append(e)
            e = e[2]
    out = None
    for item, path, _ in reversed(chain):
        out = (item, path, out)
    return out


def _merge_into(target: dict, layer: dict) -> None:
    for key, entry in layer.items():
        below = target.get(key)
        target[key] = entry if below is None else _splice(entry, below)


class _Resolver:
    def __init__(self, environ, trust_py: bool = False):
        self.environ = os.environ if environ is None else environ
        self.trust_py = trust_py  # run .py configs as Python instead of reading them
        self.sources: dict[str, Source] = {}
        self.resolved: dict[str, tuple[dict, dict]] = {}  # real path -> resolve_source's result
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    # ---- reading and FROM ------------------------------------------------

    def read(self, display: str, real: str, at: tuple | None) -> Source | None:
        """The Source of a file (read once); at: (Source, item) of the FROM naming it."""
        src = self.sources.get(real)
        if src is not None:
            return src
        reader = _reader(os.path.splitext(real)[1].lower(), self.trust_py)
        problem = None
        if reader is None:
            problem = (f"Cannot read {display}: unknown config format {os.path.splitext(real)[1] or '(no extension)'!r};"
                       " use .config, .toml or .py")
        else:
            try:
                with open(real, "rb", buffering=0) as f:  # one read of the whole file: no buffer
                    data = f.readall()
                text = data.decode("utf-8")
            except FileNotFoundError:
                problem = f"Config file not found: {display}"
            except IsADirectoryError:
                problem = f"{display} is a folder, not a config file"
            except OSError as e:
                problem = f"Cannot read {display}: {e.strerror or e}"
            except UnicodeDecodeError as e:
                line = data.count(b"\n", 0, e.start) + 1
                problem = f"{display} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line})"
            except ValueError as e:  # a path open() refuses, such as one with a NUL in it
                problem = f"Cannot read {display}: {e}"
        if problem is not None:
            if at is None:
                self.errors.append(Diagnostic(display, 0, 0, problem))
            else:
                self._fail(*at, problem)
            return None
        src = self.sources[real] = reader(text, display)
        self.errors.extend(src.errors)
        self.warnings.extend(src.warnings)
        return src

    def resolve_source(self, src: Source, chain: tuple) -> tuple[dict, dict]:
        """Merged (values, env) provenance entries of src and its bases (computed once per file).

        chain: (real path, display path) of each file from the one named first down to src.
        """
        done = self.resolved.get(chain[-1][0])
        if done is not None:
            return done
        values = src.entries if src.entries is not None else chain_entries(src.sets, src.path)
        env = src.env_entries if src.env_entries is not None else chain_entries(src.env, src.path)
        if src.bases:
            below, below_env = self.resolve_bases(src, chain)
            if below or below_env:
                _merge_into(below, values)
                _merge_into(below_env, env)
                values, env = below, below_env
        self.resolved[chain[-1][0]] = values, env
        return values, env

    def resolve_bases(self, src: Source, chain: tuple) -> tuple[dict, dict]:
        """The merged entries of src's FROM bases, in the order written."""
        values: dict = {}
        env: dict = {}
        real_dir = os.path.dirname(chain[-1][0])
        display_dir = os.path.dirname(src.path) if src.path not in (STRING_PATH, CLI_PATH) else ""
        for item in src.bases:
            # Paths are not interpolated: the tokenizer's $$ for a quoted \$ is a plain $.
            written = os.path.expanduser(item[0].replace("$$", "$") if item[4] == 1 else item[0])
            real = os.path.normpath(os.path.join(real_dir, written))
            display = os.path.normpath(os.path.join(display_dir, written))
            if not os.path.splitext(written)[1] and not os.path.exists(real):
                real += ".config"
                display += ".config"
            reals = [c[0] for c in chain]
            if real in reals:
                cycle = [c[1] for c in chain[reals.index(real):]] + [display]
                self._fail(src, item, "FROM cycle: " + " -> ".join(cycle))
                continue
            if len(chain) > MAX_DEPTH:
                self._fail(src, item, f"FROM chain deeper than {MAX_DEPTH} files (starting at {chain[0][1]})")
                continue
            base = self.read(display, real, (src, item))
            if base is None:
                continue
            bvalues, benv = self.resolve_source(base, chain + ((real, display),))
            _merge_into(values, bvalues)
            _merge_into(env, benv)
        return values, env

    def _fail(self, src: Source, item: tuple, message: str) -> None:
        self.errors.append(src.diag(item[1], item[2], item[3], message))

    # ---- interpolation, typing, rules -----------------------------------

    def finish(self, values: dict, env: dict) -> Config:
        self.entries = values
        self.env_entries = env
        # Plain values (and plain ${key} references) are typed in one fast pass;
        # the rest (interpolation, unusual spellings, errors) one by one, in value_of.
        final, rest = type_values(values)
        self.final: dict[str, Any] = final
        self.env_final: dict[str, Any] = {}
        if rest or env:
            self.pending = set(rest)  # keys whose value in final is still the default
            self.active: list[str] = []  # the keys and env:NAMEs being interpolated
            for key in rest:
                if key in self.pending:
                    self.value_of(key)
            for name in env:
                if name not in self.env_final:
                    self.env_value(name)
        failed = {k for k in rest if final[k] is _FAILED} if self.errors else ()
        for keys, check in RULES:
            # The defaults satisfy every rule, so checking them all costs less than picking.
            if failed and not failed.isdisjoint(keys):
                continue
            message = check(final)
            if message:
                self._rule_error(keys, message)
        if self.errors:
            raise ConfigError(_in_reading_order(self.errors))
        provenance = values  # this resolver's own dict, not kept after this
        if env:
            provenance = dict(values)
            for name, entry in env.items():
                provenance["ENV." + name] = entry
        return Config(final, self.env_final, provenance, self.warnings)

    def _rule_error(self, keys: tuple, message: str) -> None:
        where = next(k for k in keys if k in self.entries)
        item, path, _ = self.entries[where]
        others = [f"{k} from {self.entries[k][1]}:{self.entries[k][0][2]}:{self.entries[k][0][4]}"
                  if self.entries[k][0][2] else f"{k} from {self.entries[k][1]}"
                  for k in keys if k != where and k in self.entries and f"{k}=" in message]
        if others:
            message += " (" + ", ".join(others) + ")"
        self._error_at(item, path, message)

    def _error_at(self, item: tuple, path: str, message: str) -> None:
        src = self._source_of(path)
        if item[2]:
            self.errors.append(src.diag(item[2], item[4], item[5], message) if src else
                               Diagnostic(path, item[2], item[4], message, item[5]))
        else:
            self.errors.append(Diagnostic(path, 0, 0, message))

    def _source_of(self, path: str) -> Source | None:
        for src in self.sources.values():
            if src.path == path:
                return src
        return None

    def value_of(self, key: str) -> Any:
        """The final typed value of a schema key (_FAILED once its error is reported)."""
        if key not in self.pending:
            return self.final[key]
        item, path, _ = self.entries[key]
        raw = item[1]
        if key in self.active:
            cycle = self.active[self.active.index(key):] + [key]
            self._error_at(item, path, "Reference cycle: " + " -> ".join(cycle))
            return _FAILED
        if type(raw) is str and item[6] != 2 and "$" in raw:
            self.active.append(key)
            try:
                raw = self.interpolate(raw, item, path)
            finally:
                self.active.pop()
            if raw is not _FAILED and type(raw) is not str and KEYS[key].type is str:
                raw = format_value(raw)  # wandb_run_name=${n_layer} is the text "6"
        if raw is _FAILED:
            result = _FAILED
        else:
            try:
                result = CONVERT[key](raw)
            except ValueError as e:
                self._error_at(item, path, str(e))
                result = _FAILED
        self.final[key] = result
        self.pending.discard(key)
        return result

    def env_value(self, name: str) -> Any:
        """An environment value: ENV directives first, then the process environment; None if unset."""
        if name in self.env_final:
            return self.env_final[name]
        entry = self.env_entries.get(name)
        if entry is None:
            return self.environ.get(name)
        item, path, _ = entry
        raw = item[1]
        tag = "env:" + name
        if tag in self.active:
            self._error_at(item, path, "Reference cycle: " + " -> ".join(self.active[self.active.index(tag):] + [tag]))
            return _FAILED
        if type(raw) is not str:
            self._error_at(item, path, f"ENV {name}={format_value(raw)} must be a string: quote it")
            raw = _FAILED
        elif item[6] != 2 and "$" in raw:
            self.active.append(tag)
            try:
                raw = self.interpolate(raw, item, path)
            finally:
                self.active.pop()
            if raw is not _FAILED and type(raw) is not str:
                raw = format_value(raw)
        self.env_final[name] = raw
        return raw

    def interpolate(self, raw: str, item: tuple, path: str) -> Any:
        """raw with ${key}, ${env:NAME[:-default]} and $$ replaced.

        A value that is one ${key} and nothing else takes that key's typed value.
        """
        out = []
        i = 0
        n = len(raw)
        while True:
            j = raw.find("$", i)
            if j < 0:
                out.append(raw[i:])
                return "".join(out)
            out.append(raw[i:j])
            nxt = raw[j + 1:j + 2]
            if nxt == "$":
                out.append("$")
                i = j + 2
            elif nxt == "{":
                k = raw.find("}", j + 2)
                if k < 0:
                    self._error_at(item, path, f"Unterminated ${{ in {raw!r}: add the closing }}")
                    return _FAILED
                value = self.reference(raw[j + 2:k], item, path)
                if value is _FAILED:
                    return _FAILED
                if j == 0 and k == n - 1:
                    return value
                out.append(value if type(value) is str else format_value(value))
                i = k + 1
            else:
                out.append("$")
                i = j + 1

    def reference(self, ref: str, item: tuple, path: str) -> Any:
        if ref.startswith("env:"):
            name, has_default, default = ref[4:].partition(":-")
            if not ENV_NAME.match(name):
                self._error_at(item, path, f"Invalid environment variable name {name!r} in ${{{ref}}}")
                return _FAILED
            value = self.env_value(name)
            if value is None:
                if has_default:
                    return default
                self._error_at(item, path, (
                    f"Environment variable {name} is not set: set it, add ENV {name}=..., "
                    f"or give a default with ${{env:{name}:-default}}"))
                return _FAILED
            return value
        if ref not in KEYS:
            self._error_at(item, path, f"Unknown key {ref} in ${{{ref}}}{suggest(ref, KEYS)}")
            return _FAILED
        return self.value_of(ref)


def _in_reading_order(errors: list[Diagnostic]) -> list[Diagnostic]:
    """Each file's diagnostics by line and column, files in the order they were first named."""
    rank = {}
    for d in errors:
        rank.setdefault(d.path, len(rank))
    return sorted(errors, key=lambda d: (rank[d.path], d.line, d.col))


def _locate(path: str) -> tuple[str, str]:
    """(display path, real path) of a path given on the command line."""
    path = str(path)
    real = os.path.abspath(os.path.expanduser(path))
    if not os.path.splitext(path)[1] and not os.path.exists(real):
        return path + ".config", real + ".config"
    return path, real


def load(*paths, overrides: Iterable[str] = (), env=None, trust_py: bool = False) -> Config:
    """Resolve config files (merged left to right) and overrides into a Config.

    trust_py runs .py configs as Python, as nanoGPT does, instead of reading
    them without running them. Raises ConfigError with every problem found.
    """
    return load_with_files(*paths, overrides=overrides, env=env, trust_py=trust_py)[0]


def load_with_files(*paths, overrides: Iterable[str] = (), env=None, trust_py: bool = False) -> tuple[Config, list[str]]:
    """load(), and the real paths of every file it read (the bases included)."""
    if not paths:
        raise ConfigError("No config file given")
    res = _Resolver(env, trust_py)
    layers = []
    for path in paths:
        display, real = _locate(path)
        src = res.read(display, real, None)
        if src is not None:
            layers.append(res.resolve_source(src, ((real, display),)))
    if len(layers) == 1:
        values, envs = layers[0]
    else:
        values, envs = {}, {}
        for v, e in layers:
            _merge_into(values, v)
            _merge_into(envs, e)
    return _finish(res, values, envs, overrides), list(res.sources)


def loads(text: str, *, path: str | None = None, overrides: Iterable[str] = (), env=None) -> Config:
    """Resolve a .config text; FROM paths are relative to path's folder (or the current one)."""
    res = _Resolver(env)
    display = STRING_PATH if path is None else str(path)
    src = read_config(text, display)
    real = display  # the real path matters to FROM only: the bases' folder, and cycles back here
    if src.bases:
        real = (os.path.abspath(os.path.expanduser(display)) if path is not None
                else os.path.join(os.getcwd(), STRING_PATH))
    res.sources[real] = src
    res.errors.extend(src.errors)
    res.warnings.extend(src.warnings)
    values, envs = res.resolve_source(src, ((real, display),))
    return _finish(res, values, envs, overrides)


def _finish(res: _Resolver, values: dict, envs: dict, overrides: Iterable[str]) -> Config:
    overrides = tuple(overrides)
    if overrides:
        cli = res.sources[CLI_PATH] = cli_source(overrides)
        res.errors.extend(cli.errors)
        for item in cli.sets:
            values[item[0]] = (item, CLI_PATH, values.get(item[0]))
        for item in cli.env:
            envs[item[0]] = (item, CLI_PATH, envs.get(item[0]))
    return res.finish(values, envs)
