"""Sweeps: SWEEP read, every trial resolved and checked; slo sweep runs, resumes, records and promotes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slo
from slo.errors import ConfigError
from slo.outdir.lock import holder
from tiny_run import make_dataset, metrics

# ---------------------------------------------------------------- the trials of a config


def load_text(tmp_path: Path, text: str, *overrides: str, sweep: bool = False, name: str = "s.config"):
    path = tmp_path / name
    path.write_text(text)
    return slo.load(path, overrides=overrides, sweep=sweep)


def errors(tmp_path: Path, text: str, *overrides: str, sweep: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text, *overrides, sweep=sweep)
    return [f"{d.line}:{d.col}: {d.message}" for d in e.value.errors]


def test_a_grid_has_exactly_the_configs_of_the_grid_and_names_the_sweep_line(tmp_path):
    cfg = load_text(tmp_path, "TRAIN max_iters=10\nSWEEP learning_rate=1e-3,3e-3 n_layer=2,4\n"
                              "LOGGING out_dir=out/s\n")
    trials = cfg.sweep.trials
    assert [t.name for t in trials] == ["learning_rate=0.001,n_layer=2", "learning_rate=0.001,n_layer=4",
                                        "learning_rate=0.003,n_layer=2", "learning_rate=0.003,n_layer=4"]
    for t, (lr, n) in zip(trials, itertools.product((1e-3, 3e-3), (2, 4))):
        assert t.values == {"learning_rate": lr, "n_layer": n}
        assert (t.config["learning_rate"], t.config["n_layer"], t.config["max_iters"]) == (lr, n, 10)
        assert t.config["out_dir"] == os.path.join("out/s", t.name)
        # each swept value's origin is its own choice on the SWEEP line
        assert str(t.config.origin("learning_rate")) == f"{tmp_path / 's.config'}:2:{21 if lr == 1e-3 else 26}"
        assert str(t.config.origin("n_layer")) == f"{tmp_path / 's.config'}:2:{39 if n == 2 else 41}"
        assert t.config.origin("learning_rate").overrode is None  # over the default
    # the shared config: the swept keys as the files leave them
    assert cfg["learning_rate"] == 6e-4 and cfg["out_dir"] == "out/s"


def test_random_search_is_reproducible_by_seed_and_stays_in_its_ranges(tmp_path):
    text = "SWEEP trials=12 seed={} learning_rate=log(1e-4,1e-2) dropout=uniform(0,0.5) n_layer=int(1,3) bias=True,False\n"
    first = load_text(tmp_path, text.format(0)).sweep.trials
    again = load_text(tmp_path, text.format(0)).sweep.trials
    other = load_text(tmp_path, text.format(1)).sweep.trials
    assert [t.values for t in first] == [t.values for t in again]
    assert [t.values for t in first] != [t.values for t in other]
    assert len({t.name for t in first}) == 12
    for t in first:
        v = t.values
        assert 1e-4 <= v["learning_rate"] <= 1e-2 and 0 <= v["dropout"] <= 0.5 and v["n_layer"] in (1, 2, 3)
        assert type(v["n_layer"]) is int and v["bias"] in (True, False)
        assert float(f"{v['learning_rate']:.3g}") == v["learning_rate"]  # the name says exactly what ran
        assert f"learning_rate={slo.schema.format_value(v['learning_rate'])}" in t.name


def test_seed_alone_seeds_the_draws_and_as_a_list_sweeps_the_training_seed(tmp_path):
    cfg = load_text(tmp_path, "SWEEP seed=5 trials=2 learning_rate=log(1e-4,1e-2)\n")
    assert cfg.sweep.definition.settings["seed"] == 5 and all(t.config["seed"] == 1337 for t in cfg.sweep.trials)
    cfg = load_text(tmp_path, "SWEEP seed=1,2,3\n")
    assert [t.config["seed"] for t in cfg.sweep.trials] == [1, 2, 3]


@pytest.mark.parametrize("text, overrides, expected", [
    ("SWEEP lerning_rate=1,2\n", (), "1:7: Unknown key lerning_rate in SWEEP (did you mean learning_rate?)"),
    ("SWEEP learning_rate=''\n", (), "1:21: SWEEP learning_rate= is an empty list: give choices, such as learning_rate=a,b"),
    ("SWEEP learning_rate=1e-3,,1\n", (), "1:21: SWEEP learning_rate=1e-3,,1 has an empty choice (two commas, or one at an end)"),
    ("SWEEP trials=3 learning_rate=log(0,1)\n", (), "1:30: learning_rate=log(0,1): log(a,b) needs 0 < a (it draws log-uniformly)"),
    ("SWEEP trials=3 learning_rate=uniform(1e-2,1e-4)\n", (),
     "1:30: learning_rate=uniform(1e-2,1e-4): the ends are swapped; write uniform(0.0001,0.01)"),
    ("SWEEP learning_rate=log(1e-4,1e-2)\n", (),
     "1:21: learning_rate=log(1e-4,1e-2) is a range: ranges need random search (add trials=N to SWEEP), or give a comma list"),
    ("SWEEP trials=3 dropout=uniform(0,2)\n", (), "1:24: dropout=uniform(0,2) reaches 2.0, outside dropout's range: 0 <= x <= 1"),
    ("SWEEP n_layer=2,x\n", (), "1:17: n_layer=x is not an int"),
    ("SWEEP trials=5 n_layer=1,2\n", (),
     "1:24: trials=5 but the lists give only 2 combinations: sweep them as a grid (leave out trials), or ask for at most 2"),
    ("SWEEP out_dir=a,b\n", (), "1:7: out_dir is the sweep's folder (each trial runs in a folder under it), so it is not swept"),
    ("SWEEP n_layer=1,2\nSWEEP n_layer=3\n", (), "2:7: n_layer is swept twice in this file (first at {path}:1:7)"),
    ("SWEEP n_layer=1,2\nMODEL n_layer=2\n", (), "1:15: n_layer is swept here and set at {path}:2: remove one"),
    ("SWEEP rungs=2 n_layer=1,2\n", (), "1:13: rungs needs halving=N (successive halving keeps the best 1/N at each rung)"),
    ("MODEL n_embd=32\n", ("--n_head=2,3,5",),
     "1:12: n_embd=32 is not divisible by n_head=3 (n_embd from {path}:1:14), in trial n_head=3"),
])
def test_bad_sweeps_are_errors_at_the_sweep_item(tmp_path, text, overrides, expected):
    got = errors(tmp_path, text, *overrides)
    assert got[0] == expected.format(path=tmp_path / "s.config"), got


def test_a_rule_broken_in_some_trials_names_each_of_them(tmp_path):
    got = errors(tmp_path, "MODEL n_embd=32\nSWEEP n_head=2,3 dropout=0,0.1\n")
    assert got == ["2:16: n_embd=32 is not divisible by n_head=3 (n_embd from "
                   f"{tmp_path / 's.config'}:1:14), in all 2 trials with this value"]
    got = errors(tmp_path, "MODEL n_embd=64\nSWEEP n_head=4,8 n_kv_head=3,4\n")
    assert got == ["2:28: n_kv_head=3 does not divide n_head=4 (n_head from "
                   f"{tmp_path / 's.config'}:2:14), in trial n_head=4,n_kv_head=3",
                   "2:28: n_kv_head=3 does not divide n_head=8 (n_head from "
                   f"{tmp_path / 's.config'}:2:16), in trial n_head=8,n_kv_head=3"]


def test_precedence_a_later_assignment_or_the_command_line_wins_over_a_sweep(tmp_path):
    (tmp_path / "base.config").write_text("SWEEP learning_rate=1e-3,3e-3 n_layer=1,2\n")
    cfg = load_text(tmp_path, "FROM base.config\nTRAIN learning_rate=1e-2\n")
    assert cfg.sweep.keys == ("n_layer",) and all(t.config["learning_rate"] == 1e-2 for t in cfg.sweep.trials)
    assert "so it is not swept" in cfg.warnings[0].message
    cfg = load_text(tmp_path, "FROM base.config\n", "--n_layer=3")
    assert cfg.sweep.keys == ("learning_rate",) and cfg.sweep.trials[0].config["n_layer"] == 3
    cfg = load_text(tmp_path, "FROM base.config\n", "--n_layer=5,6,7", sweep=True)
    assert [t.values["n_layer"] for t in cfg.sweep.trials][:3] == [5, 6, 7] and len(cfg.sweep.trials) == 6
    # without slo sweep's reading, a comma is only a character
    assert errors(tmp_path, "FROM base.config\n", "--n_layer=5,6", sweep=False) == ["1:11: n_layer=5,6 is not an int"]


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["learning_rate", "n_layer", "dropout", "batch_size"]),
                       st.lists(st.integers(1, 9), min_size=1, max_size=3, unique=True), min_size=1, max_size=3))
def test_a_grid_is_the_product_of_its_lists(tmp_path_factory, grid):
    as_text = {k: [f"{v / 10}" if k == "dropout" else f"{v}e-3" if k == "learning_rate" else str(v) for v in vs]
               for k, vs in grid.items()}
    text = "SWEEP " + " ".join(f"{k}={','.join(vs)}" for k, vs in as_text.items()) + "\n"
    trials = load_text(tmp_path_factory.mktemp("grid"), text).sweep.trials
    expected = list(itertools.product(*(vs for vs in as_text.values())))
    assert len(trials) == len(expected) == len({t.name for t in trials})
    for t, combo in zip(trials, expected):
        assert [t.config[k] for k in as_text] == [slo.schema.CONVERT[k](v) for k, v in zip(as_text, combo)]


# ---------------------------------------------------------------- slo sweep


SWEEP_CONFIG = """\
MODEL n_layer=1 n_head=2 n_embd=16
DATA dataset=tiny data_dir='{data}' batch_size=4 block_size=16 gradient_accumulation_steps=1
TRAIN max_iters={iters} seed=3
LR_SCHEDULE warmup_iters=2 lr_decay_iters={iters} min_lr=1e-4
LOGGING out_dir='{out}' eval_interval={every} eval_iters=2 log_interval=1
SYSTEM device=cpu dtype=float32 compile=False
SWEEP learning_rate={lrs}
"""


def sweep_config(tmp_path: Path, out: str, iters: int = 12, lrs: str = "1e-3,1e-2", extra: str = "",
                 every: int = 4) -> Path:
    if not (tmp_path / "data" / "tiny").exists():
        make_dataset(tmp_path / "data")
    path = tmp_path / f"{out}.config"
    path.write_text(SWEEP_CONFIG.format(data=tmp_path / "data", out=tmp_path / out, iters=iters, lrs=lrs,
                                        every=every) + extra)
    return path


def sweep(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slo.cli", "sweep", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def sweep_until(config: Path, ready) -> subprocess.Popen:
    """slo sweep of config started in the background, once ready() is true (the test fails, the sweep
    killed, when the sweep ends first or two minutes pass)."""
    proc = subprocess.Popen([sys.executable, "-m", "slo.cli", "sweep", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not ready():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"the sweep did not get there: {proc.communicate()}")
        time.sleep(0.05)
    return proc


def losses(folder: Path) -> dict:
    """trial name -> (train loss per iter, val loss per iter)."""
    return {p.name: metrics(p) for p in sorted(folder.iterdir()) if (p / "metrics.jsonl").exists()}


def manifest(folder: Path) -> dict:
    return json.loads((folder / "sweep.json").read_text())


LONG = dict(iters=200, every=20)  # long enough to be killed in the middle of a trial


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A two-trial sweep run with --jobs 1, never interrupted: (its folder, its config)."""
    tmp = tmp_path_factory.mktemp("straight")
    config = sweep_config(tmp, "ref", **LONG)
    r = sweep(config, "--jobs", "1")
    assert r.returncode == 0, r.stderr
    return tmp / "ref", r


def test_a_sweep_runs_every_trial_records_them_and_prints_the_table(straight):
    folder, r = straight
    m = manifest(folder)
    assert [(t["name"], t["status"], t["iters"]) for t in m["trials"]] == [
        ("learning_rate=0.001", "finished", 200), ("learning_rate=0.01", "finished", 200)]
    assert m["definition"]["swept"] == {"learning_rate": "1e-3,1e-2"}
    for t in m["trials"]:
        config = json.loads((folder / t["name"] / "config.json").read_text())
        assert config["learning_rate"] == t["values"]["learning_rate"]
        origins = json.loads((folder / t["name"] / "config.origins.json").read_text())
        assert origins["learning_rate"][0].endswith("ref.config:7:21" if "0.001" in t["name"] else "ref.config:7:26")
    table = r.stdout.splitlines()
    assert table[-3].split()[:2] == ["0.01", "200/200"] and table[-2].split()[:2] == ["0.001", "200/200"]
    assert table[-1] == "2 trials: 2 finished"


def test_two_jobs_on_a_cpu_give_the_results_of_one(straight, tmp_path):
    folder, _ = straight
    config = sweep_config(tmp_path, "ref", **LONG)  # the same config: only its folder differs
    r = sweep(config, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert losses(tmp_path / "ref") == losses(folder)


def test_a_sweep_killed_midway_resumes_to_the_same_metrics_and_reruns_nothing(straight, tmp_path):
    folder, _ = straight
    config = sweep_config(tmp_path, "ref", **LONG)
    out = tmp_path / "ref"
    second = out / "learning_rate=0.01"
    # the first trial finished, the second has a checkpoint and runs on
    held = []  # the second trial's lock holder, read once: the lock can change between two reads

    def second_runs_with_a_checkpoint():
        running = (second / "ckpt.pt").exists() and holder(second)
        if running:
            held.append(running)
        return bool(running)

    proc = sweep_until(config, second_runs_with_a_checkpoint)
    try:
        trial = held[0]["pid"]
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(trial, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    m = manifest(out)
    assert [t["status"] for t in m["trials"]] == ["finished", "running"]
    r = sweep(config)
    assert r.returncode == 0, r.stderr
    assert "learning_rate=0.001: started" not in r.stdout and "learning_rate=0.001: resumed" not in r.stdout
    assert "learning_rate=0.01: resumed at iter" in r.stdout
    assert losses(out) == losses(folder)
    r = sweep(config)  # everything finished: nothing runs
    assert r.returncode == 0 and "started" not in r.stdout and "resumed" not in r.stdout


def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path):
    config = sweep_config(tmp_path, "nan", iters=4, lrs="1e-3", extra="SWEEP init_std=0.02,1e30\n")
    r = sweep(config)
    assert r.returncode == 1
    trials = {t["name"]: t for t in manifest(tmp_path / "nan")["trials"]}
    assert trials["init_std=0.02"]["status"] == "finished"  # a key of one choice is not in the names
    failed = trials["init_std=1e+30"]
    assert failed["status"] == "failed" and failed["error"].startswith("the train and val loss is nan")
    assert "error: 1 trial(s) failed" in r.stderr and "Traceback" not in r.stderr + r.stdout


def test_successive_halving_promotes_the_best_and_a_promoted_trial_runs_as_if_straight(tmp_path):
    config = sweep_config(tmp_path, "sha", lrs="1e-4,1e-3,1e-2", extra="SWEEP halving=3 rungs=2\n")
    r = sweep(config, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    m = manifest(tmp_path / "sha")
    (rung,) = m["rungs"]
    scores = {name: loss for name, loss in rung["ranking"]}
    best = min(scores, key=scores.get)
    assert rung["promoted"] == [best] and rung["max_iters"] == 4
    statuses = {t["name"]: (t["status"], t["iters"]) for t in m["trials"]}
    assert statuses == {name: ("finished", 12) if name == best else ("pruned", 4) for name in scores}
    # the same trial trained straight through, without stopping at the rung
    assert subprocess.run([sys.executable, "-m", "slo.runner", str(config), "--trial", best,
                           f"--out_dir={tmp_path / 'alone'}"], capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120).returncode == 0
    promoted_train, promoted_val = metrics(tmp_path / "sha" / best)
    alone_train, alone_val = metrics(tmp_path / "alone" / best)
    assert promoted_train == alone_train and promoted_val == alone_val


def test_sweep_refuses_bad_input_before_running_anything(tmp_path):
    config = sweep_config(tmp_path, "bad", lrs="1e-3,x")
    r = sweep(config)
    assert r.returncode == 2 and "learning_rate=x is not a float" in r.stderr
    assert not (tmp_path / "bad").exists()
    good = sweep_config(tmp_path, "good")
    r = subprocess.run([sys.executable, "-m", "slo.runner", str(good)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "run them with slo sweep" in r.stderr and not (tmp_path / "good").exists()


def test_a_changed_definition_is_refused_without_force(tmp_path):
    config = sweep_config(tmp_path, "ch", iters=2, lrs="1e-3")
    assert sweep(config).returncode == 0
    r = sweep(config, "--max_iters=3", "--learning_rate=1e-3,2e-3")
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {tmp_path / 'ch'} holds a different sweep (SWEEP learning_rate: 1e-3 -> "
                               "1e-3,2e-3; max_iters: 2 -> 3)")
    r = sweep(config, "--max_iters=3", "--learning_rate=1e-3,2e-3", "--force")
    assert r.returncode == 0, r.stderr
    assert [t["iters"] for t in manifest(tmp_path / "ch")["trials"]] == [3, 3]


def test_sigterm_stops_the_sweep_its_trial_saves_and_the_rerun_finishes_the_same(straight, tmp_path):
    folder, _ = straight
    config = sweep_config(tmp_path, "ref", **LONG)
    out = tmp_path / "ref"
    first = out / "learning_rate=0.001"
    metrics_file = first / "metrics.jsonl"
    # the first trial runs and has taken a few steps
    proc = sweep_until(config, lambda: holder(first) and metrics_file.exists()
                       and metrics_file.read_text().count('"loss"') >= 3)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and "run the same slo sweep command again to resume" in err
    assert [t["status"] for t in manifest(out)["trials"]] == ["stopped", "pending"]
    assert "SIGTERM: saved" in (first / "train.log").read_text()  # the trial saved before it stopped
    r = sweep(config)
    assert r.returncode == 0, r.stderr
    assert "learning_rate=0.001: resumed at iter" in r.stdout
    assert losses(out) == losses(folder)
