"""Command-line overrides under slo sweep are applied left to right, as every override is (SPEC 4)."""

from __future__ import annotations

import pytest

import slo
from slo import ConfigError

BASE = "configs/small.config"


def sweep_load(*overrides):
    return slo.load(BASE, overrides=overrides, sweep=True)


def trial_values(cfg) -> list:
    return [t.values for t in cfg.sweep.trials] if cfg.sweep else []


def test_a_plain_value_after_a_sweep_of_the_key_wins():
    cfg = sweep_load("--n_layer=1,2", "--n_layer=4")
    assert cfg["n_layer"] == 4 and cfg.sweep is None
    assert cfg.origin("n_layer").kind == "cli"


def test_a_plain_value_after_a_sweep_wins_and_the_other_keys_stay_swept():
    cfg = sweep_load("--n_layer=1,2", "--learning_rate=1e-3,3e-3", "--MODEL.n_layer=4")
    assert cfg["n_layer"] == 4 and trial_values(cfg) == [{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]


def test_a_sweep_after_a_plain_value_sweeps():
    cfg = sweep_load("--n_layer=4", "--n_layer=1,2")
    assert trial_values(cfg) == [{"n_layer": 1}, {"n_layer": 2}]


def test_a_sweep_then_a_value_then_a_sweep_sweeps_the_last_list():
    cfg = sweep_load("--n_layer=1,2", "--n_layer=4", "--n_layer=5,6")
    assert trial_values(cfg) == [{"n_layer": 5}, {"n_layer": 6}]


def test_plain_overrides_are_the_same_left_to_right():
    assert slo.load(BASE, overrides=["--n_layer=2", "--n_layer=4"])["n_layer"] == 4
    assert sweep_load("--n_layer=2", "--n_layer=4")["n_layer"] == 4


@pytest.mark.parametrize("second", ["--n_layer=3,4", "--SWEEP.n_layer=3,4"])
def test_a_key_swept_twice_on_the_command_line_is_an_error_naming_both(second):
    with pytest.raises(ConfigError) as e:
        sweep_load("--n_layer=1,2", second)
    message = str(e.value)
    assert "n_layer is swept twice on the command line (first at <command line>:1:3)" in message
    assert "<command line>:1:17" in message


def test_the_cli_reports_the_winner(slo_cli):
    r = slo_cli("show", BASE, "--n_layer=2", "--n_layer=4")
    assert r.returncode == 0 and "n_layer=4" in r.stdout


def test_a_seed_after_the_sweeps_seed_setting_leaves_the_setting():
    """--SWEEP.seed=N seeds the draws (a setting, not a sweep of seed): a later --seed sets the training seed."""
    cfg = sweep_load("--SWEEP.seed=1", "--SWEEP.trials=2", "--learning_rate=log(1e-3,1e-2)", "--seed=5")
    assert cfg["seed"] == 5 and cfg.sweep.definition.settings["seed"] == 1
    cfg = sweep_load("--SWEEP.seed=1,2", "--seed=5")  # a list sweeps the training seed: the later value wins
    assert cfg["seed"] == 5 and cfg.sweep is None
