"""``slo train FILE... [--key=value ...]``: train a model from config files.

The same command is ``python -m slo.runner`` and ``python train.py``. The
config is read and checked before torch is imported, so a config error stops
the run at once (exit status 2), and the config's ENV values are in the
process environment when torch starts. Exit status: 0 when the run finishes,
1 on a run-time error (``error: ...``, no traceback), 130 or 143 when SIGINT
or SIGTERM stopped it after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from ..command import EXIT_INTERRUPTED, EXIT_RUN_ERROR, add_trust_flags, main_of, print_warnings, split_overrides
from ..errors import ConfigError, Diagnostic, RunError
from ..statements import LINE, VALUE_COL

if TYPE_CHECKING:
    from .trainer import TrainResult


def add_arguments(parser: argparse.ArgumentParser, command: str = "train") -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="config files (.config, .toml, .py), merged left to right")
    add_trust_flags(parser)
    if command == "train":
        parser.add_argument("--trial", metavar="NAME",
                            help="of a config with SWEEP: train this trial (as slo sweep names it) in its folder "
                                 "under out_dir; overrides then read as slo sweep reads them")
    parser.epilog = ("Overrides: --key=value or --SECTION.key=value, after the files "
                     "(e.g. --batch_size=8 --max_iters=100). Exit status: 0 done, 1 run error, "
                     "2 config error, 130/143 stopped by SIGINT/SIGTERM after saving a checkpoint.")


def run(ns: argparse.Namespace, rest: list[str]) -> int:
    """The `slo train` command; a ConfigError propagates to the caller, which prints it (exit 2)."""
    from ..resolve import load

    files, overrides = split_overrides(ns.files + rest)
    trial = getattr(ns, "trial", None)
    cfg = load(*files, overrides=overrides, trust_py=ns.trust_py, trust_env=ns.trust_env, sweep=trial is not None)
    return train_config(pick_trial(cfg, trial, files))


def pick_trial(cfg, name: str | None, files: list[str]):
    """The config to train: cfg, or its trial called name; ConfigError for a sweep without one."""
    if cfg.sweep is None:
        if name is not None:
            raise ConfigError(f"--trial {name}: {' '.join(files)} has no SWEEP, so it has no trials")
        return cfg
    if name is None:
        axis = cfg.sweep.definition.axes[0]
        raise ConfigError([Diagnostic(axis.path, axis.item[LINE], axis.item[VALUE_COL], (
            f"this config sweeps {', '.join(cfg.sweep.keys)} ({len(cfg.sweep.trials)} trials): run them with "
            f"slo sweep {' '.join(files)}, or one with slo train ... --trial NAME"))])
    trial = cfg.sweep.trial(name)
    if trial is None:
        raise ConfigError(f"--trial {name}: no such trial; the trials are: " + ", ".join(
            t.name for t in cfg.sweep.trials[:20]) + (" ..." if len(cfg.sweep.trials) > 20 else ""))
    return trial.config


def train(cfg) -> TrainResult:
    """Train a Config (from slo.load or slo.loads) in this process, as slo train does, and return its result.

    The config's ENV goes into os.environ first. RunError on a run-time problem, ConfigError for a config
    with SWEEP (train one of its trials: ``slo.train(cfg.sweep.trial(name).config)``).
    """
    from .launcher import train_in_process

    if cfg.sweep is not None:
        raise ConfigError(f"this config sweeps {', '.join(cfg.sweep.keys)} ({len(cfg.sweep.trials)} trials): "
                          "train one with slo.train(cfg.sweep.trial(name).config), or all with slo sweep")
    os.environ.update(cfg.env)
    print_warnings(cfg)
    return train_in_process(cfg)


def train_config(cfg) -> int:
    """Put the config's ENV into the environment, then train: in this process, as a torchrun rank,
    or in nproc_per_node processes started here."""
    os.environ.update(cfg.env)
    print_warnings(cfg)
    try:
        from .launcher import train_processes  # imports torch, after ENV is in place

        return train_processes(cfg)  # one process, a torchrun rank, or nproc_per_node ranks
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the loop started
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: list[str] | None = None, prog: str = "slo train") -> int:
    """Entry point of ``python -m slo.runner`` and ``python train.py``."""
    parser = argparse.ArgumentParser(prog=prog, description="Train a GPT from config files.", allow_abbrev=False)
    add_arguments(parser)
    return main_of(parser, run, argv, overrides=True)
