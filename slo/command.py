"""What every command-line entry point shares: exit statuses, strict parsing, overrides, printing config problems.

``slo`` (slo.cli), ``slo train`` and ``slo bench`` import it; it imports
nothing of theirs, so they stay above it.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import ConfigError, RunError, UsageError

EXIT_RUN_ERROR = 1
EXIT_CONFIG_ERROR = 2  # a usage error too: argparse exits with 2
EXIT_INTERRUPTED = 130  # SIGINT; SIGTERM is 143, 128 + its number, as shells report it
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away

TRUST_PY_HELP = "run .py configs as Python, as nanoGPT does (only for files you trust)"
TRUST_ENV_HELP = ("let ENV set variables that choose which code runs, such as PYTHONPATH or LD_PRELOAD "
                  "(only for configs you trust)")
OVERRIDES_EPILOG = "Overrides: --key=value or --SECTION.key=value, after the files (e.g. --batch_size=8)."


def add_trust_flags(parser: argparse.ArgumentParser) -> None:
    """--trust-py and --trust-env, which every command that reads configs takes."""
    parser.add_argument("--trust-py", action="store_true", help=TRUST_PY_HELP)
    parser.add_argument("--trust-env", action="store_true", help=TRUST_ENV_HELP)


def is_override(arg: str) -> bool:
    return arg.startswith("--") and "=" in arg


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str], overrides: bool) -> tuple:
    """(namespace, rest): strict parsing. With overrides, rest holds the files and --key=value items the
    parser left (the config resolver judges the keys); any other unknown argument is a usage error (exit 2)."""
    ns, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if a.startswith("-") and not (overrides and is_override(a))] if overrides else rest
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return ns, rest


def run_parsed(run, ns: argparse.Namespace, rest: list[str]) -> int:
    """run(ns, rest), every way it can end turned into its exit status (the table in EXIT_*), no traceback."""
    try:
        return run(ns, rest)
    except ConfigError as e:
        return report_config_error(e)
    except UsageError as e:
        print(f"{ns.prog}: error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (slo keys | head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def main_of(parser: argparse.ArgumentParser, run, argv: list[str] | None, overrides: bool) -> int:
    """A command's own entry point (python -m slo.runner, slo-convert, ...): parse strictly, then run_parsed."""
    ns, rest = parse_arguments(parser, sys.argv[1:] if argv is None else argv, overrides)
    ns.prog = parser.prog
    return run_parsed(run, ns, rest)


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """(files, --key=value overrides) from the unparsed arguments."""
    files, overrides = [], []
    for a in args:
        (overrides if a.startswith("--") else files).append(a)
    return files, overrides


def print_warnings(cfg) -> None:
    for w in cfg.warnings:
        print(w.render(), file=sys.stderr)


def report_config_error(error: ConfigError) -> int:
    """Print every diagnostic of error and their count to stderr; returns EXIT_CONFIG_ERROR."""
    print(str(error), file=sys.stderr)
    n = len(error.errors)
    print(f"{n} error{'s' * (n != 1)}", file=sys.stderr)
    return EXIT_CONFIG_ERROR
