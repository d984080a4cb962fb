"""Reading config files and resolving them into a validated Config.

Precedence, lowest first: schema defaults, FROM bases (in the order written, each resolved recursively),
the file's own statements, command-line overrides. Interpolation runs after merging and before typing; then
every value is typed and checked by the schema, then the cross-field rules run. Every problem found on the way
is collected, so one ConfigError reports them all. Each file is read by its format's reader (``slo.formats``)
into a ``Source``; its items and provenance entries are those of ``slo.statements``.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from .config import Config
from .errors import ConfigError, Diagnostic
from .formats import reader
from .formats.config_lang import read_config
from .interpolate import FAILED, Interpolation, is_utf8
from .paths import base_paths, locate
from .schema import ENV_NAME, RULES, SECTION_KEYS, SECTIONS, SWEEP, code_env, suggest
from .source import CLI_PATH, STRING_PATH, Source, read_file
from .statements import (BARE, END_COL, ENTRY_ITEM, FROM_COL, FROM_END_COL, FROM_LINE, KEY, KEY_COL, LINE, OVERRIDDEN,
                         VALUE_COL)
from .lexer import chain as chain_entries, type_values
from .ranking import unranked
from .trials import Sweep, Trial, definition, is_setting, is_swept, plan

MAX_DEPTH = 32
TRIAL_FOLDER = "the sweep's folder for the trial"  # the origin of a trial's out_dir


def cli_source(overrides: Iterable[str], sweep: bool = False) -> Source:
    """Command-line overrides (``--key=value``, ``--SECTION.key=value``) as a Source.

    The arguments, joined by spaces, are its one line, so errors point at them.
    With sweep (``slo sweep``), a comma list or a range, a sweep setting and
    ``--SWEEP.key=value`` are SWEEP items.
    """
    overrides = [str(a) for a in overrides]
    src = Source(CLI_PATH, " ".join(overrides))
    seen: dict = {}
    swept: dict = {}
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
        elif sweep and (section.upper() == SWEEP or not dot and is_swept(item)):
            src.add_swept(item, swept)
        elif not dot or section.upper() in SECTION_KEYS:
            src.add(item, section.upper() if dot else None, seen)
            if key in swept and not is_setting(swept[key]):  # a later value wins over a sweep, as always
                src.sweep.remove(swept.pop(key))
        elif section.upper() == "ENV":
            if ENV_NAME.match(key):
                src.env.append(item)
            else:
                src.error(1, start, start + len(name), f"Invalid ENV name {key!r}")
        else:
            src.error(1, start, start + len(section),
                      f"Unknown section {section}{suggest(section.upper(), SECTIONS + ('ENV',))}")
        col += len(arg) + 1
    return src


def _before(item: tuple, other: tuple) -> bool:
    """Whether item is written before other in their file (False when either has no place)."""
    return bool(item[LINE] and other[LINE]) and (item[LINE], item[KEY_COL]) < (other[LINE], other[KEY_COL])


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


# The defaults satisfy every rule, so a rule whose keys all keep their defaults holds: a config is
# checked by the rules that read a key it sets (type_values's bits), not by them all.
_RULES_OF_BITS: dict[int, tuple] = {}  # at most one entry per subset of RULES


def rules_of(bits: int) -> tuple:
    """The (keys, check) rules of RULES whose bit (1 << index) is set in bits, in order, remembered."""
    rules = _RULES_OF_BITS.get(bits)
    if rules is None:
        rules = _RULES_OF_BITS[bits] = tuple(rule for i, rule in enumerate(RULES) if bits >> i & 1)
    return rules


class _Resolver:
    def __init__(self, environ, trust_py: bool = False, trust_env: bool = False, read_text=read_file):
        self.environ = os.environ if environ is None else environ
        self.read_text = read_text  # (real, display) -> (text, None) or (None, the problem): source.read_file's shape
        self.trust_py = trust_py  # run .py configs as Python instead of reading them
        self.trust_env = trust_env  # let ENV set variables that choose which code runs
        self.sources: dict[str, Source] = {}
        self.resolved: dict[str, tuple[dict, dict]] = {}  # real path -> resolve_source's result
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.entries: dict = {}
        self.trial: str | None = None  # the trial being resolved, and its swept items
        self.trial_keys: dict = {}
        self.trial_failures: dict = {}  # (item, message) of a rule trials break -> (item, path, message, trials)
        self.trial_failed = False

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
            text, problem = self.read_text(real, display)
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

    def resolve_source(self, src: Source, chain: tuple) -> tuple[dict, dict, dict]:
        """Merged (values, env) provenance entries of src and its bases, and their SWEEP items
        (key -> (item, path)), computed once per file.

        chain: (real path, display path) of each file from the one named first down to src.
        """
        done = self.resolved.get(chain[-1][0])
        if done is not None:
            return done
        values = src.entries if src.entries is not None else chain_entries(src.sets, src.path)
        env = src.env_entries if src.env_entries is not None else chain_entries(src.env, src.path)
        sweeps = self._own_sweeps(src, values) if src.sweep else {}
        if src.bases:
            below, below_env, below_sweeps = self.resolve_bases(src, chain)
            self._unswept(below_sweeps, values, src)
            below_sweeps.update(sweeps)
            sweeps = below_sweeps
            if below or below_env:
                _merge_into(below, values)
                _merge_into(below_env, env)
                values, env = below, below_env
        self.resolved[chain[-1][0]] = values, env, sweeps
        return values, env, sweeps

    def _own_sweeps(self, src: Source, values: dict) -> dict:
        """src's SWEEP items by key; one that src sets again after the SWEEP item is an error (which
        would win?). A value src sets before it is what the trials' values override."""
        sweeps = {}
        for item in src.sweep:
            entry = values.get(item[KEY])
            if entry is not None and not is_setting(item) and not _before(entry[ENTRY_ITEM], item):
                other = entry[ENTRY_ITEM]
                self._error_at(item, src.path, f"{item[KEY]} is swept here and set at {src.path}:{other[LINE]}: "
                                               "remove one")
                continue
            sweeps[item[KEY]] = (item, src.path)
        return sweeps

    def _unswept(self, sweeps: dict, values: dict, src: Source | None) -> None:
        """A key swept below and set above is no longer swept: the later assignment wins, as always."""
        for key in [k for k, (item, _) in sweeps.items() if k in values and not is_setting(item)]:
            item, path = sweeps.pop(key)
            above = values[key][ENTRY_ITEM]
            if src is not None and above[LINE]:
                self.warnings.append(src.diag(above[LINE], above[KEY_COL], above[END_COL], (
                    f"{key} is set here after the SWEEP at {path}:{item[LINE]}, so it is not swept: every trial "
                    "has this value"), "warning"))

    def resolve_bases(self, src: Source, chain: tuple) -> tuple[dict, dict, dict]:
        """The merged entries and SWEEP items of src's FROM bases, in the order written."""
        values: dict = {}
        env: dict = {}
        sweeps: dict = {}
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
            bvalues, benv, bsweeps = self.resolve_source(base, chain + ((real, display),))
            _merge_into(values, bvalues)
            _merge_into(env, benv)
            sweeps.update(bsweeps)
        return values, env, sweeps

    def _fail(self, src: Source, item: tuple, message: str) -> None:
        """An error at a FROM item of src."""
        self.errors.append(src.diag(item[FROM_LINE], item[FROM_COL], item[FROM_END_COL], message))

    # ---- typing, interpolation, rules -----------------------------------

    def finish(self, values: dict, env: dict, sweeps: dict | None = None) -> Config:
        """The Config of merged entries (with its Sweep when there are SWEEP items); ConfigError
        with every problem found."""
        if sweeps:
            return self._sweep_config(values, env, sweeps)
        config = self._config(values, env)
        if self.errors:
            self._raise()
        return config

    def _raise(self) -> None:
        if self.errors:
            unique = {(d.path, d.line, d.col, d.message): d for d in self.errors}  # a sweep's trials repeat some
            raise ConfigError(_in_reading_order(list(unique.values())))

    def _config(self, values: dict, env: dict, swept: frozenset = frozenset()) -> Config | None:
        """Type, interpolate and check merged entries: their Config, or None with the errors noted.
        The cross-field rules of swept keys are left to the trials."""
        errors_before = len(self.errors)
        self.entries, self.trial_failed = values, False
        # Plain values (and plain ${key} references) are typed in one fast pass;
        # the rest (interpolation, unusual spellings, errors) one by one.
        final, rest, rules = type_values(values)
        env_final: dict[str, Any] = {}
        if rest or env:
            env_final = Interpolation(final, values, env, self.environ, self._error_at).run(rest)
        if env and not self.trust_env:
            self._check_code_env(env)
        checks = _RULES_OF_BITS.get(rules) or rules_of(rules)  # the memo read inline: a call costs more
        if len(self.errors) > errors_before or swept:  # the rules of a key that failed or is swept: not here
            skip = swept.union(k for k in rest if final[k] is FAILED)
            checks = [(keys, check) for keys, check in checks if skip.isdisjoint(keys)]
        for keys, check in checks:
            message = check(final)
            if message:
                self._rule_error(keys, message)
        if len(self.errors) > errors_before or self.trial_failed:
            return None
        provenance = values  # this resolver's own dict, not kept after this
        if env:
            provenance = dict(values)
            for name, entry in env.items():
                provenance["ENV." + name] = entry
        return Config(final, env_final, provenance, self.warnings)

    def _sweep_config(self, values: dict, env: dict, sweeps: dict) -> Config:
        """The Config every trial shares (swept keys as the files leave them), with its Sweep: every
        trial resolved and checked, all their problems reported at once."""
        problems: list = []
        d = definition(sweeps, problems)
        for item, path, message in problems:
            self._error_at(item, path, message)
        self._raise()
        planned, problem = plan(d)
        if problem:
            self._error_at(d.axes[0].item, d.axes[0].path, problem)
        base = self._config(values, env, frozenset(a.key for a in d.axes))
        self._raise()
        folder = base["out_dir"]
        paths = {a.key: a.path for a in d.axes}
        trials = []
        for name, items in planned:
            self.trial, self.trial_keys = name, items
            trial_values = dict(values)
            for key, item in items.items():
                trial_values[key] = (item, paths[key], values.get(key))
            config = self._config(trial_values, env)
            if config is not None:
                config = config.derive({"out_dir": os.path.join(folder, name)}, TRIAL_FOLDER)
                trials.append(Trial(name, {key: config[key] for key in items}, config))
        self.trial, self.trial_keys = None, {}
        for item, path, message, names in self.trial_failures.values():
            every = sum(any(i is item for i in items.values()) for _, items in planned)
            if every == len(names) > 1:
                message += f", in all {every} trials with this value"
            else:
                message += f", in trial{'s' * (len(names) > 1)} " + ", ".join(names[:3]) + (
                    f" and {len(names) - 3} more" if len(names) > 3 else "")
            self._error_at(item, path, message)
        problem = unranked(d.settings, trials) if not self.trial_failures else None
        if problem:
            self._error_at(*d.places["metric"], problem)
        self._raise()
        return base.with_sweep(Sweep(d, tuple(trials)))

    def _check_code_env(self, env: dict) -> None:
        """An error for each ENV variable that would change which code runs."""
        for name, (item, path, _) in env.items():
            why = code_env(name)
            if why is not None:
                self._error_at(item, path, f"ENV {name} changes {why}, so a config may set it only when you pass "
                                           "--trust-env (for configs you trust); set it in your shell instead")

    def _rule_error(self, keys: tuple, message: str) -> None:
        # in a trial, at a swept key's SWEEP item where the rule names one, and naming the trial
        where = next((k for k in keys if k in self.trial_keys), None) or next(k for k in keys if k in self.entries)
        others = []
        for k in keys:
            if k != where and k in self.entries and f"{k}=" in message:
                item, path, _ = self.entries[k]
                others.append(f"{k} from {path}:{item[LINE]}:{item[VALUE_COL]}" if item[LINE] else f"{k} from {path}")
        if others:
            message += " (" + ", ".join(others) + ")"
        item, path, _ = self.entries[where]
        if self.trial is not None:  # reported once, naming all the trials it fails in
            self.trial_failures.setdefault((id(item), message), (item, path, message, []))[3].append(self.trial)
            self.trial_failed = True
            return
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


def _in_reading_order(errors: list[Diagnostic]) -> list[Diagnostic]:
    """Each file's diagnostics by line and column, files in the order they were first named."""
    rank = {}
    for d in errors:
        rank.setdefault(d.path, len(rank))
    return sorted(errors, key=lambda d: (rank[d.path], d.line, d.col))


def load(*paths, overrides: Iterable[str] = (), env=None, trust_py: bool = False, trust_env: bool = False,
         sweep: bool = False) -> Config:
    """Resolve config files (merged left to right) and overrides into a Config.

    trust_py runs .py configs as Python, as nanoGPT does, instead of reading
    them without running them. trust_env lets ENV set variables that choose
    which code runs (PYTHONPATH, LD_PRELOAD, ...: slo.schema.code_env), an
    error otherwise. sweep reads overrides as ``slo sweep`` does (``--key=a,b``
    sweeps key). A config with SWEEP has its trials in ``config.sweep``.
    Raises ConfigError with every problem found.
    """
    return load_with_files(*paths, overrides=overrides, env=env, trust_py=trust_py, trust_env=trust_env,
                           sweep=sweep)[0]


def load_with_files(*paths, overrides: Iterable[str] = (), env=None, trust_py: bool = False,
                    trust_env: bool = False, sweep: bool = False, read_text=read_file) -> tuple[Config, list[str]]:
    """load(), and the real paths of every file it read (bases too); read_text is slo.source.read_file's shape."""
    if not paths:
        raise ConfigError("No config file given")
    res = _Resolver(env, trust_py, trust_env, read_text)
    layers = []
    for path in paths:
        display, real = locate(path)
        src = res.read(display, real, None)
        if src is not None:
            layers.append(res.resolve_source(src, ((real, display),)))
    if len(layers) == 1:
        values, envs, sweeps = layers[0]
    else:
        values, envs, sweeps = {}, {}, {}
        for v, e, w in layers:
            res._unswept(sweeps, v, None)
            _merge_into(values, v)
            _merge_into(envs, e)
            sweeps.update(w)
    return _finish(res, values, envs, sweeps, overrides, sweep), list(res.sources)


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
    values, envs, sweeps = res.resolve_source(src, ((real, display),))
    return _finish(res, values, envs, sweeps, overrides)


def _finish(res: _Resolver, values: dict, envs: dict, sweeps: dict, overrides: Iterable[str],
            sweep: bool = False) -> Config:
    overrides = tuple(overrides)
    if overrides:
        cli = res.sources[CLI_PATH] = cli_source(overrides, sweep)
        res.errors.extend(cli.errors)
        for item in cli.sets:
            if item[KEY] in sweeps and not is_setting(sweeps[item[KEY]][0]):
                del sweeps[item[KEY]]  # a value given on the command line wins over a SWEEP: not swept
            values[item[KEY]] = (item, CLI_PATH, values.get(item[KEY]))
        for item in cli.env:
            envs[item[KEY]] = (item, CLI_PATH, envs.get(item[KEY]))
        for item in cli.sweep:
            sweeps[item[KEY]] = (item, CLI_PATH)
    return res.finish(values, envs, sweeps)
