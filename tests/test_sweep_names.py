"""Every trial of a sweep has a name and a folder of its own, and trains with its own values."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slo
from slo.errors import RunError
from slo.sweeps.sweep_command import open_manifest
from test_sweep import load_text, manifest, sweep, sweep_config

COLLIDING = "a_b~2,a/b,a_b"  # a/b's folder name is a_b; a_b again would be numbered a_b~2


def test_a_numbered_name_never_takes_another_trials_name(tmp_path):
    trials = load_text(tmp_path, f"SWEEP wandb_run_name={COLLIDING}\n").sweep.trials
    assert [t.name for t in trials] == ["wandb_run_name=a_b~2", "wandb_run_name=a_b", "wandb_run_name=a_b~3"]
    assert [t.config["wandb_run_name"] for t in trials] == ["a_b~2", "a/b", "a_b"]
    trials = load_text(tmp_path, "SWEEP wandb_run_name=a/b,a_b,a_b~2,a_b\n").sweep.trials
    assert [t.name for t in trials] == ["wandb_run_name=a_b", "wandb_run_name=a_b~3", "wandb_run_name=a_b~2",
                                        "wandb_run_name=a_b~4"]


# values whose folder names meet: / becomes _, and a repeated name is numbered with ~N
WORDS = st.one_of(st.sampled_from(["a_b", "a/b", "a_b~2", "a/b~2", "a_b~3", "a_b~2~2", "a"]),
                  st.text(alphabet="ab_~/.0123456789", min_size=1, max_size=6))


@settings(max_examples=60, deadline=None)
@given(names=st.lists(WORDS, min_size=1, max_size=8), layers=st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_n_trials_make_n_names_and_n_folders_each_with_its_own_values(tmp_path_factory, names, layers):
    tmp = tmp_path_factory.mktemp("names")
    names = names + names[:2]  # some values twice
    text = f"LOGGING out_dir=sw\nSWEEP wandb_run_name={','.join(names)} n_layer={','.join(map(str, layers))}\n"
    trials = load_text(tmp, text).sweep.trials
    combos = [(name, n) for name in names for n in layers]
    assert len(trials) == len(combos)
    assert len({t.name for t in trials}) == len(trials)
    folders = {os.path.normpath(t.config["out_dir"]) for t in trials}
    assert len(folders) == len(trials)
    for t, (name, n) in zip(trials, combos):
        assert t.config["out_dir"] == os.path.join("sw", t.name) and os.sep not in t.name
        assert (t.config["wandb_run_name"], t.config["n_layer"]) == (name, n)
        assert t.values == {"wandb_run_name": name, "n_layer": n}


def test_a_long_name_is_cut_to_fit_a_folder_name_in_bytes(tmp_path):
    long = ["é" * 150, "é" * 151, "a" * 300]
    trials = load_text(tmp_path, f"SWEEP wandb_run_name={','.join(long)}\n").sweep.trials
    assert len({t.name for t in trials}) == 3 and [t.config["wandb_run_name"] for t in trials] == long
    for t in trials:
        assert len(t.name.encode()) <= 210 and t.name.endswith(("...", "...~2"))
        (tmp_path / t.name).mkdir()  # a folder name the file system takes


def test_the_manifest_refuses_two_trials_in_one_folder(tmp_path):
    cfg = load_text(tmp_path, f"LOGGING out_dir='{tmp_path / 'sw'}'\nSWEEP wandb_run_name=x,y\n")
    first, second = cfg.sweep.trials
    twin = dataclasses.replace(second, name=first.name, config=second.config.derive(
        {"out_dir": first.config["out_dir"]}, "test"))
    cfg = cfg.with_sweep(dataclasses.replace(cfg.sweep, trials=(first, twin)))
    with pytest.raises(RunError, match="the trials of wandb_run_name=x and of wandb_run_name=y would both run in "):
        open_manifest(tmp_path / "sw", cfg, [], [], force=False)
    assert not (tmp_path / "sw").exists()


def test_each_trial_of_colliding_values_trains_in_its_own_folder_with_its_own_values(tmp_path):
    config = sweep_config(tmp_path, "names", iters=2, lrs="1e-3", extra=f"SWEEP wandb_run_name={COLLIDING}\n")
    r = sweep(config)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "names"
    trials = manifest(folder)["trials"]
    assert [t["values"]["wandb_run_name"] for t in trials] == ["a_b~2", "a/b", "a_b"]
    assert len({t["name"] for t in trials}) == 3 and all(t["status"] == "finished" for t in trials)
    for t in trials:
        run = folder / t["name"]
        ran = json.loads((run / "config.json").read_text())
        assert ran["wandb_run_name"] == t["values"]["wandb_run_name"]
        assert Path(ran["out_dir"]) == run and (run / "ckpt.pt").is_file()


def test_a_key_set_before_the_sweep_line_is_overridden_by_each_trial(tmp_path):
    cfg = load_text(tmp_path, "MODEL n_layer=4\nSWEEP n_layer=1,2\n")
    path = tmp_path / "s.config"
    assert cfg["n_layer"] == 4  # the shared config: as the file leaves it
    for t, (n, col) in zip(cfg.sweep.trials, ((1, 15), (2, 17))):
        assert t.config["n_layer"] == n
        origin = t.config.origin("n_layer")
        assert str(origin) == f"{path}:2:{col}" and str(origin.overrode) == f"{path}:1:15"
    # a [sweep] table after the value's table in TOML, alike
    (tmp_path / "s.toml").write_text("[model]\nn_layer = 4\n\n[sweep]\nn_layer = [1, 2]\n")
    cfg = slo.load(tmp_path / "s.toml")
    assert [t.config["n_layer"] for t in cfg.sweep.trials] == [1, 2]
    assert str(cfg.sweep.trials[0].config.origin("n_layer").overrode) == f"{tmp_path / 's.toml'}:2:11"
    # from the command line of slo sweep, left to right alike
    cfg = load_text(tmp_path, "MODEL n_head=1\n", "--n_layer=4", "--n_layer=1,2", sweep=True)
    assert [t.config["n_layer"] for t in cfg.sweep.trials] == [1, 2]


def test_a_key_set_after_the_sweep_line_in_the_same_file_is_still_an_error(tmp_path):
    with pytest.raises(slo.ConfigError) as e:
        load_text(tmp_path, "SWEEP n_layer=1,2\nMODEL n_layer=4\n")
    assert [f"{d.line}:{d.col}: {d.message}" for d in e.value.errors] == [
        f"1:15: n_layer is swept here and set at {tmp_path / 's.config'}:2: remove one"]
