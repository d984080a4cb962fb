"""Reading config files and resolving them into a validated Config.

Precedence, lowest first: schema defaults, FROM bases (in the order written,
each resolved recursively), the file's own statements, command-line
overrides. Interpolation runs after merging and before typing; then every
value is typed and checked by the schema, then the cross-field rules run.
Every problem found on the way is collected, so one ConfigError reports
them all. Each file is read by its format's reader (``slo.formats``) into a
``Source``; its items and provenance entries are those of ``slo.statements``.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Iterable

from .config import Config
from .errors import ConfigError, Diagnostic
from .formats import reader
from .formats.config_lang import read_config
from .interpolate import FAILED, Interpolation, is_utf8
from .paths import base_paths, locate
from .schema import ENV_NAME, RULES, SECTION_KEYS, SECTIONS, code_env, suggest
from .source import CLI_PATH, STRING_PATH, Source
from .statements import BARE, END_COL, ENTRY_ITEM, FROM_COL, FROM_END_COL, FROM_LINE, KEY, LINE, OVERRIDDEN, VALUE_COL
from .tokenizer import chain as chain_entries
from .tokenizer import type_values

MAX_DEPTH = 32
MAX_FILE_BYTES = 16 << 20  # a config file larger than this is refused, not read
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # opening a FIFO does not wait for a writer


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
        item = (key, value, 1, start, start + len(name) + 1, start + len(body), BARE)
        if not arg.isascii() and not is_utf8(arg):
            src.error(1, col, col + len(arg), "This argument is not UTF-8 text (it holds bytes the terminal passed "
                      "undecoded); give it in UTF-8")
        elif not eq or not key:
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
            if id(e[ENTRY_ITEM]) not in seen:
                seen.add(id(e[ENTRY_ITEM]))
                chain.append(e)
            e = e[OVERRIDDEN]
    out = None
    for item, path, _ in reversed(chain):
        out = (item, path, out)
    return out


def _merge_into(target: dict, layer: dict) -> None:
    for key, entry in layer.items():
        below = target.get(key)
        target[key] = entry if below is None else _splice(entry, below)


class _Resolver:
    def __init__(self, environ, trust_py: bool = False, trust_env: bool = False):
        self.environ = os.environ if environ is None else environ
        self.trust_py = trust_py  # run .py configs as Python instead of reading them
        self.trust_env = trust_env  # let ENV set variables that choose which code runs
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
        read = reader(os.path.splitext(real)[1].lower(), self.trust_py)
        problem = None
        if read is None:
            problem = (f"Cannot read {display}: unknown config format {os.path.splitext(real)[1] or '(no extension)'!r};"
                       " use .config, .toml or .py")
        else:
            text, problem = read_file(real, display)
        if problem is not None:
            if at is None:
                self.errors.append(Diagnostic(display, 0, 0, problem))
            else:
                self._fail(*at, problem)
            return None
        src = self.sources[real] = read(text, display)
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
            display, real = base_paths(item, real_dir, display_dir)
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
        """An error at a FROM item of src."""
        self.errors.append(src.diag(item[FROM_LINE], item[FROM_COL], item[FROM_END_COL], message))

    # ---- typing, interpolation, rules -----------------------------------

    def finish(self, values: dict, env: dict) -> Config:
        self.entries = values
        # Plain values (and plain ${key} references) are typed in one fast pass;
        # the rest (interpolation, unusual spellings, errors) one by one.
        final, rest = type_values(values)
        env_final: dict[str, Any] = {}
        if rest or env:
            env_final = Interpolation(final, values, env, self.environ, self._error_at).run(rest)
        if not self.trust_env:
            self._check_code_env(env)
        failed = {k for k in rest if final[k] is FAILED} if self.errors else ()
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
        return Config(final, env_final, provenance, self.warnings)

    def _check_code_env(self, env: dict) -> None:
        """An error for each ENV variable that would change which code runs."""
        for name, (item, path, _) in env.items():
            why = code_env(name)
            if why is not None:
                self._error_at(item, path, f"ENV {name} changes {why}, so a config may set it only when you pass "
                                           "--trust-env (for configs you trust); set it in your shell instead")

    def _rule_error(self, keys: tuple, message: str) -> None:
        where = next(k for k in keys if k in self.entries)
        others = []
        for k in keys:
            if k != where and k in self.entries and f"{k}=" in message:
                item, path, _ = self.entries[k]
                others.append(f"{k} from {path}:{item[LINE]}:{item[VALUE_COL]}" if item[LINE] else f"{k} from {path}")
        if others:
            message += " (" + ", ".join(others) + ")"
        item, path, _ = self.entries[where]
        self._error_at(item, path, message)

    def _error_at(self, item: tuple, path: str, message: str) -> None:
        """An error at an item's value (at its file when the item has no place)."""
        src = self._source_of(path)
        if item[LINE]:
            self.errors.append(src.diag(item[LINE], item[VALUE_COL], item[END_COL], message) if src else
                               Diagnostic(path, item[LINE], item[VALUE_COL], message, item[END_COL]))
        else:
            self.errors.append(Diagnostic(path, 0, 0, message))

    def _source_of(self, path: str) -> Source | None:
        for src in self.sources.values():
            if src.path == path:
                return src
        return None


def read_file(real: str, display: str) -> tuple[str | None, str | None]:
    """(text, None) of a config file, or (None, the problem): only a regular file of at most
    MAX_FILE_BYTES of UTF-8 is read (a FIFO, a device or a folder never is, so nothing waits)."""
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, f"Config file not found: {display}"
    except OSError as e:
        return None, f"Cannot read {display}: {e.strerror or e}"
    except ValueError as e:  # a path open() refuses, such as one with a NUL in it
        return None, f"Cannot read {display}: {e}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISDIR(info.st_mode):
                return None, f"{display} is a folder, not a config file"
            return None, f"{display} is not a regular file (a pipe, socket or device); name a config file"
        size = min(info.st_size, MAX_FILE_BYTES)
        data = os.read(fd, size + 1)  # all of it in one read, unless it grew since fstat
        while size < len(data) <= MAX_FILE_BYTES:
            more = os.read(fd, MAX_FILE_BYTES + 1 - len(data))
            if not more:
                break
            data += more
    except OSError as e:
        return None, f"Cannot read {display}: {e.strerror or e}"
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return None, f"{display} is larger than {MAX_FILE_BYTES:,} bytes: too large for a config file"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, f"{display} is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line})"


def _in_reading_order(errors: list[Diagnostic]) -> list[Diagnostic]:
    """Each file's diagnostics by line and column, files in the order they were first named."""
    rank = {}
    for d in errors:
        rank.setdefault(d.path, len(rank))
    return sorted(errors, key=lambda d: (rank[d.path], d.line, d.col))


def load(*paths, overrides: Iterable[str] = (), env=None, trust_py: bool = False, trust_env: bool = False) -> Config:
    """Resolve config files (merged left to right) and overrides into a Config.

    trust_py runs .py configs as Python, as nanoGPT does, instead of reading
    them without running them. trust_env lets ENV set variables that choose
    which code runs (PYTHONPATH, LD_PRELOAD, ...: slo.schema.code_env), an
    error otherwise. Raises ConfigError with every problem found.
    """
    return load_with_files(*paths, overrides=overrides, env=env, trust_py=trust_py, trust_env=trust_env)[0]


def load_with_files(*paths, overrides: Iterable[str] = (), env=None, trust_py: bool = False,
                    trust_env: bool = False) -> tuple[Config, list[str]]:
    """load(), and the real paths of every file it read (the bases included)."""
    if not paths:
        raise ConfigError("No config file given")
    res = _Resolver(env, trust_py, trust_env)
    layers = []
    for path in paths:
        display, real = locate(path)
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


def loads(text: str, *, path: str | None = None, overrides: Iterable[str] = (), env=None,
          trust_env: bool = False) -> Config:
    """Resolve a .config text; FROM paths are relative to path's folder (or the current one)."""
    res = _Resolver(env, trust_env=trust_env)
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
            values[item[KEY]] = (item, CLI_PATH, values.get(item[KEY]))
        for item in cli.env:
            envs[item[KEY]] = (item, CLI_PATH, envs.get(item[KEY]))
    return res.finish(values, envs)
