"""Seeing runs: ``slo plot`` (curves as a picture), ``slo runs`` (a table), ``slo diff`` (configs side by side).

Each also reads a sweep's folder (slo.report.sweep_folder): its trials ranked, plotted
and compared by their swept values.

Importing this package imports neither torch nor matplotlib; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse

from ..command import add_trust_flags


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "plot":
        from .plot import SEVERAL_RUNS_FILE, SINGLE_RUN_FILE

        parser.add_argument("runs", nargs="+", metavar="OUT_DIR",
                            help="run folders (out_dir) to plot together, or one sweep folder (with sweep.json): "
                                 "its trials, each named by its swept values")
        parser.add_argument("-o", "--output", metavar="FILE.png",
                            help=f"picture to write (default: OUT_DIR/{SINGLE_RUN_FILE} for one run or a sweep, "
                                 f"{SEVERAL_RUNS_FILE} for several runs)")
        parser.epilog = "Needs matplotlib: pip install 'slo[plot]'."
    elif command == "runs":
        from .runs import SEARCH_DEPTH, SORT_KEYS

        parser.add_argument("dir", nargs="?", default=".", metavar="DIR",
                            help=f"folder holding runs, searched {SEARCH_DEPTH} levels deep (default: .); "
                                 "a sweep folder (with sweep.json): its trials, best val loss first")
        parser.add_argument("--sort", choices=SORT_KEYS, default=SORT_KEYS[0],
                            help="updated: running runs, then newest first (default); name: by folder; "
                                 "loss: best val loss first (a sweep's trials are always by loss)")
        parser.epilog = ("Status: finished (iterations reached max_iters); running (metrics.jsonl or ckpt.pt "
                         "changed in the last 2 minutes, or 3 times the longest gap between its records); "
                         "resumable (stopped with a checkpoint: init_from=resume continues it); "
                         "crashed (stopped with no checkpoint). A sweep's trial shows its sweep status: pending, running, "
                         "stopped, finished, failed (with its error) or pruned.")
    elif command == "diff":
        parser.add_argument("a", metavar="A", help="a config file (.config, .toml, .py), a run's out_dir, "
                                                   "a config.json or a ckpt.pt")
        parser.add_argument("b", metavar="B", help="the same kinds as A")
        add_trust_flags(parser)  # --trust-env for the habit: comparing runs nothing
        parser.add_argument("--all", action="store_true",
                            help="also show keys that are at their default, or absent, on both sides; for two "
                                 "trials of one sweep, every key that differs, not only the swept ones")
        parser.epilog = "Exit status: 0 the same, 1 different, 2 a file could not be read."


def run(ns: argparse.Namespace, rest: list[str]) -> int:
    if ns.command == "diff":
        from .diff import run_command

        return run_command(ns)
    if ns.command == "plot":
        from .plot import run_command
    else:
        from .runs import run_command
    return run_command(ns)
