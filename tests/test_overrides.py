"""Command-line overrides with nanoGPT's --key=value habits, without its traps (SPEC section 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slo import ConfigError, dumps, load

from test_legacy_py import nanogpt_configurator

DATA = Path(__file__).parent / "data" / "legacy"
CHAR = DATA / "train_shakespeare_char.py"


def nanogpt_accepts(overrides: list[str]) -> bool:
    """Whether nanoGPT's configurator takes these overrides on top of the char-level config."""
    try:
        nanogpt_configurator(CHAR.read_text(), overrides)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize("override, key, value", [
    ("--compile=false", "compile", False),           # nanoGPT: the string 'false' for a bool: refused
    ("--compile=False", "compile", False),
    ("--max_iters=1e3", "max_iters", 1000),          # nanoGPT: a float for an int: refused
    ("--learning_rate=1", "learning_rate", 1.0),     # nanoGPT: an int for a float: refused
    ("--dropout=0", "dropout", 0.0),
    ("--batch_size=32", "batch_size", 32),
    ("--wandb_run_name=lr=1e-3,bs=32", "wandb_run_name", "lr=1e-3,bs=32"),  # a value with =
    ("--init_from=resume", "init_from", "resume"),
    ("--MODEL.n_layer=4", "n_layer", 4),
    ("--lr_schedule.min_lr=1e-5", "min_lr", 1e-5),
])
def test_nanogpt_habits_on_a_legacy_config(override, key, value):
    cfg = load(CHAR, overrides=[override])
    assert cfg[key] == value and type(cfg[key]) is type(value)
    assert cfg.origin(key).kind == "cli"


def test_the_traps_nanogpt_falls_into_are_real():
    assert not nanogpt_accepts(["--compile=false"])
    assert not nanogpt_accepts(["--max_iters=1e3"])
    assert not nanogpt_accepts(["--learning_rate=1"])
    assert nanogpt_accepts(["--learning_rate=1.0", "--compile=False", "--max_iters=1000"])


def test_overridden_config_written_as_py_takes_nanogpt_overrides():
    cfg = load(CHAR, overrides=["--learning_rate=1", "--max_iters=1e3", "--compile=false"])
    text = dumps(cfg, "py", only_set=True)
    assert "learning_rate = 1.0\n" in text and "max_iters = 1000\n" in text and "compile = False\n" in text
    values = nanogpt_configurator(text, ["--learning_rate=0.5", "--max_iters=10", "--compile=True"])
    assert (values["learning_rate"], values["max_iters"], values["compile"]) == (0.5, 10, True)


def test_an_unknown_key_gets_a_suggestion():
    with pytest.raises(ConfigError) as info:
        load(CHAR, overrides=["--learning_rat=1", "--MODEL.n_layers=2", "--TRAIN.batch_size=2"])
    assert [d.message for d in info.value.errors] == [
        "Unknown key learning_rat (did you mean learning_rate?)",
        "Unknown key n_layers (did you mean n_layer?)",
        "batch_size belongs to DATA, not TRAIN",
    ]


def test_cli_overrides_after_legacy_files_and_trust_py(slo_cli, tmp_path):
    result = slo_cli("show", CHAR, "--compile=false", "--max_iters=1e3", "--learning_rate=1",
                     "--wandb_run_name=a=b", "--MODEL.n_layer=4", "--format", "json")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert (values["compile"], values["max_iters"], values["learning_rate"]) == (False, 1000, 1.0)
    assert (values["wandb_run_name"], values["n_layer"]) == ("a=b", 4)
    result = slo_cli("check", DATA / "bad" / "unsupported_loop.py", "--trust-py", "--n_head=2")
    assert result.returncode == 0, result.stderr
    result = slo_cli("check", CHAR, "--n_layr=2")
    assert result.returncode == 2
    assert "<command line>:1:3: error: Unknown key n_layr (did you mean n_layer?)" in result.stderr


def test_convert_does_not_import_torch(tmp_path):
    code = ("import sys\nfrom slo.convert import main\n"
            f"rc = main([{str(CHAR)!r}, '-o', {str(tmp_path / 'c.toml')!r}])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nsys.exit(rc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
