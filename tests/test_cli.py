"""One command line: slo --version and --help, strict flags for every verb, one table of exit statuses,
--trust-py / --trust-env wherever configs are read, shell completion, slo convert and slo-convert,
and slo.train as a library call."""

from __future__ import annotations

import importlib.metadata
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

import slo
from slo.cli import COMMANDS, OVERRIDE_COMMANDS
from tiny_run import tiny_config

# The arguments that satisfy each verb's required positionals, so that what is judged is the flag after them.
REQUIRED = {"convert": ["a.config", "-o", "b.toml"], "diff": ["a.config", "a.config"], "plot": ["out"],
            "sample": ["out"], "export": ["out"], "completion": ["bash"], "fmt": ["a.config"],
            "eval": ["out", "--tasks", "t"]}
CONFIG_READERS = sorted(OVERRIDE_COMMANDS | {"convert", "diff"})


def slo_run(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """python -m slo ARGS: a generous guard against a hang, never the thing tested."""
    return subprocess.run([sys.executable, "-m", "slo", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a.config").write_text("MODEL n_layer=2\n")
    return tmp_path


def test_version_is_the_installed_distributions():
    r = slo_run("--version")
    assert r.returncode == 0 and r.stdout == f"slo {importlib.metadata.version('slo')}\n"
    assert slo.__version__ == importlib.metadata.version("slo")


def test_help_lists_every_command_in_plain_text():
    r = slo_run("--help")
    assert r.returncode == 0
    for name, (_, help_text) in COMMANDS.items():
        assert re.search(rf"^    {name}\b", r.stdout, re.M), name
        assert " ".join(help_text.split()[:3]) in " ".join(r.stdout.split()), name
    assert "``" not in r.stdout and "Exit status" in r.stdout


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: COMMAND"),
    (["trian"], "invalid choice: 'trian'"),
    (["--n_layer=2", "check"], "unrecognized arguments: --n_layer=2"),
])
def test_a_missing_or_unknown_command_is_exit_2(args, message):
    r = slo_run(*args)
    assert r.returncode == 2 and message in r.stderr.splitlines()[-1] and not r.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unknown_flag_is_exit_2_naming_it(name, folder):
    r = slo_run(name, *REQUIRED.get(name, []), "--no-such-flag", cwd=folder)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[-1] == f"slo {name}: error: unrecognized arguments: --no-such-flag"
    assert r.stderr.startswith(f"usage: slo {name}") and not r.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["a.config"]  # nothing ran


@pytest.mark.parametrize("name", ["convert", "diff", "plot", "sample", "export", "completion"])
def test_a_missing_argument_is_exit_2_naming_it(name, folder):
    r = slo_run(name, cwd=folder)
    assert r.returncode == 2 and "error: the following arguments are required" in r.stderr.splitlines()[-1]


@pytest.mark.parametrize("name", sorted(OVERRIDE_COMMANDS))
def test_overrides_are_config_errors_at_exit_2_where_taken(name, folder):
    r = slo_run(name, "a.config", "--n_layr=2", cwd=folder)
    assert r.returncode == 2, r.stderr
    assert "error: Unknown key n_layr (did you mean n_layer?)" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - OVERRIDE_COMMANDS))
def test_overrides_are_usage_errors_where_not_taken(name, folder):
    r = slo_run(name, *REQUIRED.get(name, []), "--n_layer=2", cwd=folder)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == f"slo {name}: error: unrecognized arguments: --n_layer=2"


@pytest.mark.parametrize("name", CONFIG_READERS)
def test_every_command_that_reads_configs_takes_both_trust_flags(name):
    r = slo_run(name, "--help")
    assert r.returncode == 0 and "--trust-py" in r.stdout and "--trust-env" in r.stdout


@pytest.mark.parametrize("name", CONFIG_READERS)
def test_trust_py_runs_a_py_config_for_every_reader(name, tmp_path):
    """A .py config that only Python can read: refused without --trust-py, read with it."""
    (tmp_path / "a.py").write_text("n_layer = len([1, 2])\nmax_iters = 1\n")
    args = {"convert": ["a.py", "-o", "b.toml"], "diff": ["a.py", "a.py"]}.get(name, ["a.py"])
    if name in ("train", "sweep", "bench"):
        args += ["--device=nowhere"]  # stop at the config check: a bad device is a config error after reading
    without, with_ = slo_run(name, *args, cwd=tmp_path), slo_run(name, *args, "--trust-py", cwd=tmp_path)
    assert without.returncode == 2 and "--trust-py" in without.stderr
    assert "--trust-py" not in with_.stderr.replace("--trust-py]", "")


def test_exit_1_for_a_run_that_fails(tmp_path):
    for args in (["sample", "nowhere"], ["export", "nowhere", "-o", "x"], ["prepare", "nowhere.txt", "-o", "d/x"],
                 ["plot", "nowhere"], ["runs", "nowhere"], ["bench", "nowhere.config"]):
        r = slo_run(*args, cwd=tmp_path)
        assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr, args


def test_train_a_missing_dataset_is_exit_1(tmp_path):
    config = tiny_config(tmp_path, extra="DATA dataset=missing\n")
    r = slo_run("train", config)
    assert r.returncode == 1 and "missing" in r.stderr and "Traceback" not in r.stderr


def test_convert_and_the_slo_convert_alias_write_the_same(folder):
    assert slo_run("convert", "a.config", "-o", "one.toml", cwd=folder).returncode == 0
    alias = shutil.which("slo-convert")
    command = [alias] if alias else [sys.executable, "-m", "slo.convert"]
    r = subprocess.run([*command, "a.config", "-o", "two.toml"], cwd=folder, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert (folder / "one.toml").read_text() == (folder / "two.toml").read_text() == "[model]\nn_layer = 2\n"


def complete(script: str, *words: str) -> list[str]:
    """What bash offers for the last of words, with the completion script loaded."""
    line = " ".join(words)
    quoted = " ".join(f"'{w}'" for w in words)
    program = (f"{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
               f"COMP_POINT={len(line)}; _slo; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    r = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_offers_commands_flags_choices_and_keys(tmp_path):
    script = slo_run("completion", "bash").stdout
    assert complete(script, "slo", "tr") == ["train"]
    assert set(COMMANDS) <= set(complete(script, "slo", ""))
    assert complete(script, "slo", "show", "--for") == ["--format"]
    assert complete(script, "slo", "show", "--format", "") == ["config", "toml", "py", "json"]
    assert complete(script, "slo", "check", "a.config", "--n_la") == ["--n_layer="]
    assert "--prompt" in complete(script, "slo", "sample", "--")
    assert "--n_layer=" not in complete(script, "slo", "sample", "--")  # sample takes no overrides
    assert complete(script, "slo", "completion", "") == ["bash", "zsh"]


def test_zsh_completion_is_the_bash_function_through_bashcompinit():
    script = slo_run("completion", "zsh").stdout
    assert script.startswith("#compdef slo\nautoload -U +X bashcompinit && bashcompinit\n")
    assert script.endswith(slo_run("completion", "bash").stdout)
    if shutil.which("zsh"):
        r = subprocess.run(["zsh", "-c", script + "\nwhence -w _slo"], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "function" in r.stdout, r.stderr


def test_slo_train_trains_in_this_process_and_returns_its_result(tmp_path):
    cfg = slo.load(tiny_config(tmp_path, max_iters=4))
    result = slo.train(cfg)
    assert result.iter_num == 4 and result.stopped_by is None and result.exit_status == 0
    assert math.isfinite(result.best_val_loss) and math.isfinite(result.last_loss)
    assert (tmp_path / "out" / "ckpt.pt").is_file()


def test_slo_train_refuses_a_sweep_naming_its_trials(tmp_path):
    cfg = slo.load(tiny_config(tmp_path, extra="SWEEP n_layer=1,2\n"), sweep=True)
    with pytest.raises(slo.ConfigError, match="sweeps n_layer .2 trials.: train one with"):
        slo.train(cfg)
