"""What every command-line entry point shares: exit statuses, overrides, printing config problems.

``slo`` (slo.cli), ``slo-convert``, ``slo train`` and ``slo bench`` import it; it imports
nothing of theirs, so they stay above it.
"""

from __future__ import annotations

import sys

from .errors import ConfigError

EXIT_RUN_ERROR = 1
EXIT_CONFIG_ERROR = 2
EXIT_INTERRUPTED = 130


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
