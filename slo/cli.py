"""The ``slo`` command: check, show, train, sweep, prepare, sample, bench, plot, runs, diff.

The config commands never import torch; the others import what they need
when they run. A config error prints its diagnostics and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from .command import EXIT_CONFIG_ERROR, EXIT_INTERRUPTED, EXIT_RUN_ERROR, print_warnings, report_config_error, split_overrides
from .errors import ConfigError, RunError


def load_given(files: list[str], overrides: list[str], ns):
    """The config of check and show: the files merged, or the resolved config of a run's out_dir."""
    from . import load, loads

    run_config = os.path.join(files[0], "config.json") if len(files) == 1 else ""
    if not (os.path.isdir(files[0] if files else "") and os.path.isfile(run_config)):
        return load(*files, overrides=overrides, trust_py=ns.trust_py, trust_env=ns.trust_env,
                    sweep=getattr(ns, "sweep", False))
    return loads(run_config_text(run_config), path=run_config, overrides=overrides, trust_env=ns.trust_env)


def run_config_text(path: str) -> str:
    """A run's config.json (flat: key -> value, ENV values as ENV.NAME) as .config statements."""
    import json

    from .formats.config_lang import config_value, quote
    from .schema import KEYS

    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object of config keys")
    lines = []
    for key, value in data.items():
        if key.startswith("ENV.") and isinstance(value, str):
            lines.append(f"ENV {key[4:]}={quote(value)}")
        elif key in KEYS:
            lines.append(f"{KEYS[key].section} {key}={config_value(key, value)}")
        else:
            lines.append(f"TRAIN {key}=1")  # an unknown key: the error names it
    return "\n".join(lines) + "\n"


def cmd_check(ns, rest) -> int:
    files, overrides = split_overrides(ns.files + rest)
    cfg = load_given(files, overrides, ns)
    print_warnings(cfg)
    n = sum(1 for k in cfg if cfg.is_set(k))
    print(f"{' '.join(files)}: ok ({n} keys set, {len(cfg.warnings)} warning{'s' * (len(cfg.warnings) != 1)})")
    if cfg.sweep is not None:
        print("\n".join(cfg.sweep.listing()))
    return 0


def cmd_show(ns, rest) -> int:
    from . import dumps
    files, overrides = split_overrides(ns.files + rest)
    if ns.explain and ns.format:
        print(f"slo show: error: --explain prints the config with its origins; it takes no --format {ns.format}",
              file=sys.stderr)
        return EXIT_CONFIG_ERROR
    cfg = load_given(files, overrides, ns)
    if ns.explain:
        print(cfg.explain())
        if cfg.sweep is not None:
            print("[SWEEP]\n" + "\n".join(cfg.sweep.explain()))
    else:
        sys.stdout.write(dumps(cfg, ns.format or "config"))
    return 0


# name -> (module, help). Each module has add_arguments(parser) and run(ns, rest) -> exit
# status, and imports torch only inside run(), so `slo --help` stays fast.
COMMANDS = {
    "check": ("slo.cli", "Check config files; exit 0 when valid, 2 on errors."),
    "show": ("slo.cli", "Print the resolved config (config, toml, py or json) or --explain it."),
    "keys": ("slo.keys_doc", "List every config key with its type, default, range and meaning."),
    "train": ("slo.runner.train", "Train a model from config files (same as python -m slo.runner)."),
    "sweep": ("slo.sweeps.command", "Run the trials of a sweep (SWEEP lines or --key=a,b), resumable, N at a time."),
    "prepare": ("slo.runner.prepare", "Turn text, JSONL or Parquet into a dataset (train.bin, val.bin, meta.json), any tokenizer."),
    "sample": ("slo.runner.sample", "Generate text from a checkpoint."),
    "export": ("slo.runner.export", "Write a checkpoint as a Hugging Face model folder (GPT-2 or Llama)."),
    "bench": ("slo.runner.bench", "Measure training throughput against a nanoGPT-style loop."),
    "plot": ("slo.report", "Plot loss and learning-rate curves of runs to a PNG."),
    "runs": ("slo.report", "List the runs under a folder."),
    "diff": ("slo.report", "Show what differs between two configs or two runs."),
}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="config files, merged left to right")
    parser.epilog = "Overrides: --key=value or --SECTION.key=value, after the files."
    parser.add_argument("--trust-py", action="store_true",
                        help="run .py configs as Python, as nanoGPT does (only for files you trust)")
    parser.add_argument("--trust-env", action="store_true",
                        help="let ENV set variables that choose which code runs, such as PYTHONPATH or LD_PRELOAD "
                             "(only for configs you trust)")
    if command == "show":
        parser.add_argument("--format", choices=("config", "toml", "py", "json"), help="default: config")
        parser.add_argument("--explain", action="store_true", help="show where every value came from")


def run(ns, rest) -> int:
    return cmd_check(ns, rest) if ns.command == "check" else cmd_show(ns, rest)


def _module(name: str):
    import importlib
    return importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            _module(module).add_arguments(p, name)
        except ImportError:  # an optional part that is not installed; its run says how to get it
            pass
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    try:
        return _module(COMMANDS[ns.command][0]).run(ns, rest)
    except ConfigError as e:
        return report_config_error(e)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (slo keys | head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
