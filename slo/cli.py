"""The slo command: one program, slo VERB, with one set of habits.

Every verb parses its own flags strictly: an unknown flag or a missing
argument is exit status 2 with argparse's one-line usage error. Only the
verbs that read configs into a run (check, show, train, sweep, bench) take
``--key=value`` overrides after the files; there an unknown key is a config
error, also 2. The config verbs never import torch; the others import what
they need when they run, so ``slo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from .command import OVERRIDES_EPILOG, add_trust_flags, parse_arguments, print_warnings, run_parsed, split_overrides
from . import __version__
from .errors import ConfigError

# name -> (module, one line of help). Each module has add_arguments(parser, name) and run(ns, rest) -> exit
# status, and imports torch only inside run().
COMMANDS = {
    "check": ("slo.cli", "Check config files: exit 0 when valid, 2 on errors."),
    "show": ("slo.cli", "Print the resolved config (config, toml, py or json), or where each value came from."),
    "keys": ("slo.keys_doc", "List every config key with its type, default, range and meaning."),
    "convert": ("slo.convert", "Convert configs between .config, .toml and nanoGPT's .py."),
    "fmt": ("slo.fmt", "Format .config files canonically; --check for CI and pre-commit."),
    "lsp": ("slo.lsp", "Run the language server for .config files over stdio (for editors)."),
    "train": ("slo.runner.train_command", "Train a model from config files."),
    "sweep": ("slo.sweeps.sweep_command", "Run the trials of a sweep, N at a time, resumable."),
    "prepare": ("slo.runner.prepare.prepare_command", "Turn text, JSONL or Parquet into a dataset with any tokenizer."),
    "sample": ("slo.runner.sample", "Generate text from a run's checkpoint."),
    "export": ("slo.runner.hf.export", "Write a checkpoint as a Hugging Face model folder or a GGUF file."),
    "eval": ("slo.evals.eval_command", "Run lm-evaluation-harness tasks on a checkpoint and print its table."),
    "bench": ("slo.runner.bench", "Measure training throughput beside a nanoGPT-style loop."),
    "plot": ("slo.report", "Plot the loss and learning-rate curves of runs to a PNG."),
    "runs": ("slo.report", "List the runs under a folder, with their status and losses."),
    "diff": ("slo.report", "Show what differs between two configs or two runs."),
    "completion": ("slo.cli", "Print a bash or zsh completion script for slo."),
}
# The verbs that take --key=value overrides after their files.
OVERRIDE_COMMANDS = frozenset({"check", "show", "train", "sweep", "bench"})

EXIT_STATUSES = ("Exit status, for every command: 0 done; 1 a run failed (I/O, a dead rank, a damaged file); "
                 "2 a usage or config error; 130/143 stopped by SIGINT/SIGTERM after saving; "
                 "141 the reader of stdout went away.")


def top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slo", description="Train small GPT language models from Dockerfile-style config files.",
        epilog=f"Run slo COMMAND --help for a command's flags. {EXIT_STATUSES}", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"slo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of one verb, with the flags its module declares."""
    import importlib

    module, help_text = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=prog or f"slo {name}", description=help_text, allow_abbrev=False)
    importlib.import_module(module).add_arguments(parser, name)
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(namespace with .command, the files and overrides left) or SystemExit(2) on a usage error."""
    if not argv or argv[0] in ("-h", "--help", "--version") or argv[0][:1] != "-" and argv[0] not in COMMANDS:
        top_parser().parse_args(argv[:1])  # help, version, a missing or unknown command: prints and exits
    if argv[0] not in COMMANDS:
        top_parser().error(f"unrecognized arguments: {argv[0]} (give the command first: slo COMMAND ...)")
    name = argv[0]
    ns, rest = parse_arguments(command_parser(name), argv[1:], name in OVERRIDE_COMMANDS)
    ns.command, ns.prog = name, f"slo {name}"
    return ns, rest


# --- the verbs this module runs itself: check, show, completion

def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "completion":
        parser.add_argument("shell", choices=("bash", "zsh"),
                            help="eval \"$(slo completion bash)\" in ~/.bashrc, or the same with zsh in ~/.zshrc")
        return
    parser.add_argument("files", nargs="*", metavar="FILE", help="config files, merged left to right, "
                        "or a run's out_dir")
    parser.epilog = OVERRIDES_EPILOG
    add_trust_flags(parser)
    if command == "show":
        parser.add_argument("--format", choices=("config", "toml", "py", "json"), help="default: config")
        parser.add_argument("--explain", action="store_true", help="show where every value came from")


def run(ns, rest) -> int:
    if ns.command == "completion":
        return cmd_completion(ns)
    return cmd_check(ns, rest) if ns.command == "check" else cmd_show(ns, rest)


def load_given(files: list[str], overrides: list[str], ns):
    """The config of check and show: the files merged, or the resolved config of a run's out_dir."""
    from .resolve import load, loads

    if not files:
        raise ConfigError("No config file given: name one or more .config, .toml or .py files, or a run's out_dir")
    run_config = os.path.join(files[0], "config.json") if len(files) == 1 else ""
    if not (os.path.isdir(files[0]) and os.path.isfile(run_config)):
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
    from .dump import dumps

    files, overrides = split_overrides(ns.files + rest)
    if ns.explain and ns.format:
        command_parser("show").error("--explain prints the config with its origins; it takes no --format")
    cfg = load_given(files, overrides, ns)
    if ns.explain:
        print(cfg.explain())
        if cfg.sweep is not None:
            print("[SWEEP]\n" + "\n".join(cfg.sweep.explain()))
    else:
        sys.stdout.write(dumps(cfg, ns.format or "config"))
    return 0


def cmd_completion(ns) -> int:
    from .shell_completion import script
    from .schema import KEYS

    parsers = {name: command_parser(name) for name in COMMANDS}
    sys.stdout.write(script(ns.shell, parsers, sorted(OVERRIDE_COMMANDS), sorted(KEYS)))
    return 0


def main(argv: list[str] | None = None) -> int:
    import importlib

    ns, rest = parse(list(sys.argv[1:] if argv is None else argv))
    return run_parsed(importlib.import_module(COMMANDS[ns.command][0]).run, ns, rest)


if __name__ == "__main__":
    sys.exit(main())
