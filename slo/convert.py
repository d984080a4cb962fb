"""slo convert (or slo-convert): configs from one format to another (.config, .toml, .py).

    slo convert IN -o OUT [--flatten] [--trust-py]
    slo convert IN [IN ...] -o FOLDER --to config|toml|py [--flatten] [--trust-py]

OUT's extension picks the format (with a folder, --to does). Without
--flatten the output keeps the input's FROM / extends and holds only the
input's own values (an interpolation such as ${max_iters} stays one, so the
output follows its base as the input did); a base converted in the same call
is named under its new name, any other base keeps its name, its path made
relative to the output's folder. With --flatten the output stands alone:
every key set anywhere, with its resolved value, and every ENV value. A .py
output is always flat (nanoGPT has no FROM).

Comment lines above a key and the comment at the end of its line come along,
as do the comments at the top and the bottom of the file. SWEEP comes along
into a .config or a .toml (a ``[sweep]`` table); nanoGPT's .py has no sweeps,
so converting a config that sweeps to .py is refused, naming its SWEEP.

Every output is loaded again before it takes its place and must give the same
config (and the same trials) as its input; it is written to a temporary file
beside OUT, then moved over OUT in one step. Inputs are never modified. Exit
status: 0 on success, 2 on a config or usage error (the diagnostics printed,
no traceback; a SWEEP the output's format cannot hold in one line), 1 when a
file cannot be written.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from . import atomic
from .command import EXIT_RUN_ERROR, add_trust_flags, main_of, print_warnings
from .config import Config
from .errors import ConfigError, RunError, UsageError
from .formats import FORMATS
from .formats.comments import Comments
from .formats.document import Document, Interpolated, from_config, sweep_entry, sweep_text, swept_keys
from .formats.legacy_py import VOLATILE
from .paths import base_paths, locate, written_path
from .resolve import load, load_with_files
from .schema import format_value
from .source import Source
from .statements import KEY, KEY_COL, LINE, QUOTE, VALUE, is_interpolated


@dataclass
class Conversion:
    input: str  # as given
    output: str
    real_input: str
    real_output: str
    config: Config | None = None
    text: str = ""
    source: Source | None = None  # the input as read, for its own values and bases (not for .py)


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def plan(inputs: list[str], output: str, to: str | None = None) -> list[Conversion]:
    """Which file goes where; UsageError when the arguments do not say it clearly."""
    if not inputs:
        raise UsageError("Name at least one config file to convert")
    ext = _ext(output)
    to_ext = "." + to.lstrip(".").lower() if to else None
    if to_ext is not None and to_ext not in FORMATS:
        raise UsageError(f"Cannot convert to {to!r}: use config, toml or py")
    single_file = len(inputs) == 1 and ext and not os.path.isdir(output)
    if single_file:
        if ext not in FORMATS:
            extra = " (for JSON: slo show --format json)" if ext == ".json" else ""
            raise UsageError(f"Cannot write {output}: slo-convert writes .config, .toml or .py{extra}")
        if to_ext is not None and to_ext != ext:
            raise UsageError(f"--to {to} does not match the extension of {output}")
        pairs = [(inputs[0], output)]
    else:
        if os.path.exists(output) and not os.path.isdir(output):
            raise UsageError(f"{output} is a file: with several inputs, -o names a folder")
        if to_ext is None and len(inputs) == 1 and not os.path.isdir(output):
            raise UsageError(f"{output or repr(output)} has no extension: name the output .config, .toml or .py, "
                             "or give --to to write into a folder")
        if to_ext is None:
            raise UsageError(f"Give --to config, toml or py: {output} is a folder"
                             if len(inputs) == 1 else "Give --to config, toml or py for the files in the folder")
        pairs = []
        for path in inputs:
            stem = os.path.splitext(os.path.basename(locate(path)[0]))[0]
            pairs.append((path, os.path.join(output, stem + to_ext)))
    conversions = []
    for path, out in pairs:
        display, real = locate(path)
        conversions.append(Conversion(display, out, real, os.path.abspath(os.path.expanduser(out))))
    outs: dict[str, str] = {}
    for c in conversions:  # an output among the files read is refused once they are known, in convert()
        if c.real_output in outs:
            raise UsageError(f"{outs[c.real_output]} and {c.input} would both be written to {c.output}")
        outs[c.real_output] = c.input
    return conversions


# ---- what to write ---------------------------------------------------------

def _own_value(item: tuple, final):
    """An item's value as the output keeps it: its interpolation if it has one, else the final value."""
    if is_interpolated(item[VALUE], item[QUOTE]):
        return Interpolated(item[VALUE])
    return final


def _base_real(item: tuple, c: Conversion) -> str:
    """The real path of a base, found as the resolver finds it."""
    return base_paths(item, os.path.dirname(c.real_input))[1]


def _base_path(item: tuple, c: Conversion, converted: dict[str, str]) -> str:
    """A base's path as written in the output (relative to the output's folder)."""
    written = written_path(item)
    real = _base_real(item, c)
    target = converted.get(real)
    if target is None:
        if os.path.isabs(os.path.expanduser(written)) or os.path.dirname(c.real_input) == os.path.dirname(c.real_output):
            return written
        target = real
    return os.path.relpath(target, os.path.dirname(c.real_output))


def read_input(c: Conversion) -> None:
    """c's text and, but for a .py (which has no bases), its Source."""
    ext = _ext(c.real_input)
    try:
        with open(c.real_input, "rb") as f:  # as the resolver reads it: a \r stays a \r
            c.text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:  # it loaded a moment ago
        raise RunError(f"Cannot read {c.input}: {e}") from None
    if ext != ".py":
        c.source = FORMATS[ext].read(c.text, c.input)


def document(c: Conversion, converted: dict[str, str], flatten: bool) -> Document:
    """What c's output holds (c.config is the input, resolved)."""
    cfg = c.config
    fmt = FORMATS.get(_ext(c.real_input))
    comments = fmt.read_comments(c.text) if fmt else Comments()
    if flatten or c.source is None or _ext(c.real_output) == ".py":
        comments.above.pop("FROM", None)
        comments.trailing.pop("FROM", None)
        doc = from_config(cfg, only_set=True)
        doc.comments = comments
        return doc
    src = c.source
    values = {item[KEY]: _own_value(item, cfg[item[KEY]]) for item in src.sets}
    env = {item[KEY]: _own_value(item, cfg.env[item[KEY]]) for item in src.env}
    bases = [_base_path(item, c, converted) for item in src.bases]
    sweep = {item[KEY]: sweep_entry(item) for item in src.sweep}
    return Document(values, env, bases, comments, sweep)


def refuse_unwritable_sweep(c: Conversion, flatten: bool) -> None:
    """UsageError when c's output cannot hold the SWEEP it would write: any in a .py (nanoGPT's configs
    have no sweeps), or a swept value the output's format cannot say (_unsayable)."""
    sweep, ext = c.config.sweep, _ext(c.real_output)
    if sweep is None:
        return
    d = sweep.definition
    places = [(a.item, a.path) for a in d.axes] + list(d.places.values())
    if ext == ".py":
        raise UsageError(f"{_place(*places[0])}: SWEEP cannot be written to {c.output}: a .py config (nanoGPT's) "
                         "has no sweeps; convert to .config or .toml, which keep it")
    written = None if flatten or c.source is None else {item[KEY] for item in c.source.sweep}
    for item, path in places[:len(d.axes)]:
        problem = _unsayable(item, ext) if written is None or item[KEY] in written else None
        if problem:
            raise UsageError(f"{_place(item, path)}: SWEEP {item[KEY]} {problem}")


def _unsayable(item: tuple, ext: str) -> str | None:
    """Why a swept value cannot be written in a format, if it cannot: in TOML, a $ that is not interpolated
    (every TOML string is, and the trials' names would change); in .config, a choice with a comma."""
    text = sweep_text(item)
    if ext == ".toml" and "$" in text and not isinstance(text, Interpolated):
        return (f"has a $ that is not interpolated ({text}), which a TOML string cannot say; write $$ for a $ "
                "(unquoted or in double quotes), or convert to .config")
    if ext == ".config" and isinstance(item[VALUE], list) and any("," in str(v) for v in item[VALUE]):
        return "has a choice with a comma in it, which a .config comma list cannot say; convert to .toml"
    return None


def _place(item: tuple, path: str) -> str:
    return f"{path}:{item[LINE]}:{item[KEY_COL]}"


# ---- writing ---------------------------------------------------------------

def _differences(a: Config, b: Config) -> list[str]:
    """What b says otherwise than a: keys, ENV, and SWEEP (its trials; a swept key's shared value is no
    trial's, and a flat output leaves it out)."""
    swept = swept_keys(a)
    keys = [k for k in a if k not in swept and (a[k] != b[k] or type(a[k]) is not type(b[k]))]
    names = sorted(set(a.env) | set(b.env))
    return keys + ["ENV." + n for n in names if a.env.get(n) != b.env.get(n)] + (
        ["SWEEP"] if _trials(a) != _trials(b) else [])


def _trials(config: Config):
    """What a config's sweep runs: its settings, and each trial's name and typed values (None: no sweep)."""
    if config.sweep is None:
        return None
    trials = [(t.name, [(k, v, type(v)) for k, v in t.values.items()]) for t in config.sweep.trials]
    return config.sweep.definition.settings, trials


def write_checked(c: Conversion, text: str, trust_py: bool) -> None:
    """Write text to c.real_output atomically, after checking that it loads to c.config."""
    def check(tmp: str) -> None:
        try:
            again = load(tmp, trust_py=trust_py, trust_env=True)
        except ConfigError as e:
            raise RunError(f"The converted {c.output} does not load (this is a bug in slo-convert):\n{e}") from None
        diff = _differences(c.config, again)
        if diff:
            raise RunError(f"The converted {c.output} differs from {c.input} in {', '.join(diff)}"
                           " (this is a bug in slo-convert); nothing was written")

    try:
        atomic.replace_file(c.real_output, lambda f: f.write(text), mode="w", encoding="utf-8", newline="",
                            check=check, suffix=_ext(os.path.basename(c.real_output)))
    except OSError as e:
        raise RunError(f"Cannot write {c.output}: {e.strerror or e}") from None


def _bases_first(conversions: list[Conversion]) -> list[Conversion]:
    """conversions ordered so that an input's bases among them are written before it."""
    by_real = {c.real_input: c for c in conversions}
    done: list[Conversion] = []

    def visit(c: Conversion, seen: tuple) -> None:
        if c in done or c.real_input in seen:
            return
        for dep in _base_reals(c):
            if dep in by_real:
                visit(by_real[dep], seen + (c.real_input,))
        done.append(c)

    for c in conversions:
        visit(c, ())
    return done


def _base_reals(c: Conversion) -> list[str]:
    return [_base_real(item, c) for item in c.source.bases] if c.source else []


def convert(inputs: list[str], output: str, *, to: str | None = None, flatten: bool = False,
            trust_py: bool = False) -> list[Conversion]:
    """Convert config files; returns what was written.

    Raises UsageError for arguments that do not make sense, ConfigError for
    configs that do not load (nothing is written then), RunError when a
    file cannot be written.
    """
    conversions = plan(list(inputs), output, to)
    errors = []
    read: dict[str, str] = {}  # real path of every file the inputs load -> the input that loads it
    for c in conversions:
        try:
            c.config, files = load_with_files(c.input, trust_py=trust_py, trust_env=True)  # converting runs nothing
        except ConfigError as e:
            errors.extend(e.errors)
            continue
        for path in files:
            read.setdefault(os.path.realpath(path), c.input)
    if errors:
        raise ConfigError(errors)
    inputs = {os.path.realpath(c.real_input) for c in conversions}
    for c in conversions:
        real = os.path.realpath(c.real_output)
        if real in read:
            if real in inputs:
                raise UsageError(f"{c.output} is an input: slo-convert never modifies its inputs; choose another output")
            raise UsageError(f"{c.output} is read by {read[real]} (through FROM): slo-convert never modifies the "
                             "files its inputs read; choose another output")
    for c in conversions:
        refuse_unwritable_sweep(c, flatten)
        read_input(c)
    converted = {c.real_input: c.real_output for c in conversions}
    for c in _bases_first(conversions):
        doc = document(c, converted, flatten)
        write_checked(c, FORMATS[_ext(c.real_output)].write(doc), trust_py)
    return conversions


DESCRIPTION = "Convert configs between .config, .toml and nanoGPT's .py."


def add_arguments(parser: argparse.ArgumentParser, command: str = "convert") -> None:
    parser.epilog = "Without --flatten the output keeps FROM / extends; a .py output is always flat."
    parser.add_argument("inputs", nargs="+", metavar="IN", help="config files to convert")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="the output file (its extension picks the format), or a folder with --to")
    parser.add_argument("--to", choices=("config", "toml", "py"), help="the format of the files written to a folder")
    parser.add_argument("--flatten", action="store_true", help="write every value set, with no FROM / extends")
    add_trust_flags(parser)


def main(argv: list[str] | None = None) -> int:
    """slo-convert, the same as slo convert."""
    parser = argparse.ArgumentParser(prog="slo-convert", description=DESCRIPTION, allow_abbrev=False)
    add_arguments(parser)
    return main_of(parser, run, argv, overrides=False)


def run(ns: argparse.Namespace, rest: list[str]) -> int:
    """slo convert (and slo-convert); --trust-env is taken for the habit: a conversion runs nothing.
    A config or usage error goes up to command.run_parsed; a file that cannot be written is named by the command."""
    try:
        conversions = convert(ns.inputs, ns.output, to=ns.to, flatten=ns.flatten, trust_py=ns.trust_py)
    except RunError as e:
        print(f"{ns.prog}: error: {e}", file=sys.stderr)
        return EXIT_RUN_ERROR
    for c in conversions:
        print_warnings(c.config)
        for w in c.config.warnings:
            if VOLATILE in w.message:  # the value read now is what the output holds
                key = w.message.split(VOLATILE)[0]
                print(f"{w.location()}: warning: {key} was frozen at conversion: {c.output} holds "
                      f"{key}={format_value(c.config[key])}, what time.time() gave now", file=sys.stderr)
        print(f"{c.input} -> {c.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
