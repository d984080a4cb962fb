"""SWEEP metric= and goal=: trials ranked by an evaluation task's score (LOGGING eval_tasks) instead of the
validation loss, for successive halving's promotions and the sweep's table. The settings are checked where
they are written (config, TOML, command line); a rung is ranked by the scores at its end, best first by the
goal; a metric no trial recorded decides nothing and says which ones they did record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import slo
from slo.errors import ConfigError, RunError
from slo.report.sweep_folder import format_sweep_table
from slo.sweeps.manifest import Manifest, TrialRecord, read_manifest, write_manifest
from slo.sweeps.sweep_command import changes, promote
from slo.ranking import HIGHER_IS_BETTER, Ranking
from tiny_run import tiny_config

os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"

BASE = "TRAIN max_iters=10\nLOGGING out_dir=out/s eval_tasks=hellaswag,gsm8k\n"


def load(tmp_path: Path, text: str, name: str = "s.config", *overrides: str):
    (tmp_path / name).write_text(text)
    return slo.load(tmp_path / name, overrides=overrides, sweep=True)


def errors(tmp_path: Path, text: str, name: str = "s.config", *overrides: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text, name, *overrides)
    return [f"{d.line}:{d.col}: {d.message}" for d in e.value.errors]


# ---------------------------------------------------------------- the settings, where they are written

@pytest.mark.parametrize("items, expected", [
    ("", Ranking("val_loss", "min")),
    ("metric=val_loss", Ranking("val_loss", "min")),
    ("metric=hellaswag/acc_norm", Ranking("hellaswag/acc_norm", "max")),
    ("metric=hellaswag/acc goal=min", Ranking("hellaswag/acc", "min")),
    ("metric=gsm8k/exact_match,strict-match", Ranking("gsm8k/exact_match,strict-match", "max")),
    ("metric=hellaswag/bits_per_byte", Ranking("hellaswag/bits_per_byte", "min")),
    ("metric=gsm8k/my_score goal=max", Ranking("gsm8k/my_score", "max")),
])
def test_the_ranking_of_a_sweep_line(tmp_path, items, expected):
    cfg = load(tmp_path, BASE + f"SWEEP learning_rate=1e-3,3e-3 {items}\n")
    assert Ranking.of(cfg.sweep.definition.settings) == expected
    assert len(cfg.sweep.trials) == 2  # metric and goal sweep nothing
    assert ("ranked by" in cfg.sweep.describe()) == (expected != Ranking())


@pytest.mark.parametrize("items, expected", [
    ("metric=hellaswag", "1:38: metric=hellaswag must be val_loss or TASK/METRIC, such as hellaswag/acc_norm"),
    ("metric=hellaswag/x/y", "1:38: metric=hellaswag/x/y must be val_loss or TASK/METRIC"),
    ("metric=hellaswag/made_up", "1:38: metric=hellaswag/made_up: whether a higher or a lower hellaswag/made_up is "
                                 "better is not known here; add goal=max or goal=min to SWEEP"),
    ("metric=hellaswag/acc goal=up", "1:57: goal=up must be min or max"),
    ("goal=max", "1:36: goal=max would rank the highest val_loss first"),
    ("metric=piqa/acc", "1:38: metric=piqa/acc ranks the trials by the task piqa, but LOGGING eval_tasks "
                        "(eval_tasks=hellaswag,gsm8k) does not run it in all 2 trials: add piqa to eval_tasks"),
])
def test_a_bad_setting_is_an_error_at_its_place(tmp_path, items, expected):
    (message,) = errors(tmp_path, f"SWEEP learning_rate=1e-3,3e-3 {items}\n" + BASE)
    assert message.startswith(expected)


def test_the_task_must_run_in_every_trial_and_the_error_names_those_where_it_does_not(tmp_path):
    text = BASE + "SWEEP eval_tasks=hellaswag,piqa,gsm8k metric=piqa/acc\n"
    (message,) = errors(tmp_path, text)
    assert "does not run it in eval_tasks=hellaswag, eval_tasks=gsm8k: add piqa to eval_tasks" in message


def test_toml_and_the_command_line_take_them_as_a_config_does(tmp_path):
    (tmp_path / "s.toml").write_text('[train]\nmax_iters = 10\n[logging]\neval_tasks = "hellaswag"\n'
                                     '[sweep]\nlearning_rate = [1e-3, 3e-3]\nmetric = "hellaswag/acc"\ngoal = "min"\n')
    cfg = slo.load(tmp_path / "s.toml", sweep=True)
    assert Ranking.of(cfg.sweep.definition.settings) == Ranking("hellaswag/acc", "min")
    (tmp_path / "n.config").write_text("TRAIN max_iters=10\nLOGGING eval_tasks=hellaswag\n")
    cfg = slo.load(tmp_path / "n.config", overrides=["--learning_rate=1e-3,3e-3", "--metric=hellaswag/acc_norm"],
                   sweep=True)
    assert Ranking.of(cfg.sweep.definition.settings) == Ranking("hellaswag/acc_norm", "max")
    (tmp_path / "bad.toml").write_text('[sweep]\nlearning_rate = [1e-3, 3e-3]\ngoal = ["max"]\n')
    (message,) = errors(tmp_path, (tmp_path / "bad.toml").read_text(), "bad.toml")
    assert message == "3:8: goal takes one string, not a TOML array"


def test_a_config_with_them_converts_to_toml_and_back_unchanged(tmp_path):
    from slo.convert import convert

    (tmp_path / "a.config").write_text(BASE + "SWEEP learning_rate=1e-3,3e-3 metric=gsm8k/exact_match,strict-match "
                                              "goal=max\n")
    convert([str(tmp_path / "a.config")], str(tmp_path / "a.toml"))
    assert 'metric = "gsm8k/exact_match,strict-match"' in (tmp_path / "a.toml").read_text()
    convert([str(tmp_path / "a.toml")], str(tmp_path / "b.config"))
    a, b = (slo.load(tmp_path / n, sweep=True).sweep.definition.settings for n in ("a.config", "b.config"))
    assert a == b and a["metric"] == "gsm8k/exact_match,strict-match"


def test_the_default_goals_are_lm_evaluation_harness_s_own():
    pytest.importorskip("lm_eval.api.metrics")  # which registers the harness's metrics
    import lm_eval.api.registry as registry

    assert HIGHER_IS_BETTER == {name: registry.HIGHER_IS_BETTER_REGISTRY[name] for name in HIGHER_IS_BETTER}
    assert set(registry.HIGHER_IS_BETTER_REGISTRY) - set(HIGHER_IS_BETTER) <= {"bypass"}  # not a score


# ---------------------------------------------------------------- ranking a rung

def trial_folder(folder: Path, name: str, evals: list[dict]) -> None:
    """A trial's run folder whose metrics.jsonl holds these evaluations (each with a val loss)."""
    (folder / name).mkdir(parents=True)
    lines = [json.dumps({"iter": 0, "loss": 5.0, "lr": 1e-3})]
    lines += [json.dumps({"val_loss": 3.0, "train_loss": 3.0, "lr": 1e-3, **rec}) for rec in evals]
    (folder / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def rung_of(folder: Path, scores: list[float | None], ranking: Ranking, halving: int = 2, target: int = 5):
    """promote() of one rung of trials t0, t1, ... whose evaluation at target scored scores (None: no score
    there, the val loss alone); their manifest, with the metric in its settings."""
    metric = ranking.metric
    records = [TrialRecord(f"t{i}", {"learning_rate": i}, "stopped", 0) for i in range(len(scores))]
    for record, score in zip(records, scores):
        early = {"iter": 2, metric: 99.0 if ranking.goal == "min" else -99.0}  # before target: never the rank
        last = {"iter": target} | ({} if score is None else {metric: score})
        trial_folder(folder, record.name, [early, last] if metric != "val_loss" else [last | {"val_loss": score}])
    manifest = Manifest({"settings": {"metric": metric, "goal": ranking.goal}}, records)
    scheduler = SimpleNamespace(folder=folder, say=lambda text: None)
    kept = promote(scheduler, manifest, records, {r.name: target for r in records}, 0, halving)
    return [t.name for t in kept], manifest


scores_list = st.lists(st.one_of(st.none(), st.floats(0, 1, allow_nan=False)), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(scores=scores_list, goal=st.sampled_from(["min", "max"]), halving=st.integers(2, 4))
def test_a_rung_keeps_the_best_by_the_goal_at_its_end_ties_in_the_manifest_s_order(tmp_path_factory, scores, goal,
                                                                                    halving):
    folder = tmp_path_factory.mktemp("rung")
    if all(s is None for s in scores):
        with pytest.raises(RunError):
            rung_of(folder, scores, Ranking("tiny/acc", goal), halving)
        return
    kept, manifest = rung_of(folder, scores, Ranking("tiny/acc", goal), halving)
    scored = [(s, i) for i, s in enumerate(scores) if s is not None]
    best = sorted(scored, key=lambda p: (-p[0] if goal == "max" else p[0], p[1]))
    assert kept == [f"t{i}" for _, i in best[:max(1, len(scores) // halving)]]
    (rung,) = manifest.rungs
    assert rung["metric"] == "tiny/acc" and dict(rung["ranking"]) == {f"t{i}": s for i, s in enumerate(scores)}
    assert {t.name for t in manifest.trials if t.status == "pruned"} == {f"t{i}" for i in range(len(scores))} - set(kept)


def test_a_tie_goes_to_the_lower_val_loss_at_the_rung_s_end(tmp_path):
    records = [TrialRecord(f"t{i}", {"learning_rate": i}, "stopped", 0) for i in range(3)]
    for r, (acc, loss) in zip(records, [(0.5, 2.0), (0.75, 2.5), (0.75, 2.25)]):
        trial_folder(tmp_path, r.name, [{"iter": 5, "tiny/acc": acc, "val_loss": loss}])
    manifest = Manifest({"settings": {"metric": "tiny/acc", "goal": "max"}}, records)
    kept = promote(SimpleNamespace(folder=tmp_path, say=print), manifest, records, dict.fromkeys(["t0", "t1", "t2"], 5),
                   0, 3)
    assert [t.name for t in kept] == ["t2"] and [n for n, _ in manifest.rungs[0]["ranking"]] == ["t2", "t1", "t0"]


def test_by_val_loss_a_rung_keeps_the_lowest_as_before(tmp_path):
    kept, _ = rung_of(tmp_path, [2.5, 1.5, 3.5, 2.0], Ranking())
    assert kept == ["t1", "t3"]


def test_a_metric_no_trial_recorded_decides_nothing_and_names_the_ones_recorded(tmp_path):
    records = [TrialRecord(f"t{i}", {"learning_rate": i}, "stopped", 0) for i in range(2)]
    for r in records:
        trial_folder(tmp_path, r.name, [{"iter": 5, "tiny/acc": 0.5, "tiny/acc_norm": 0.25}])
    manifest = Manifest({"settings": {"metric": "tiny/acc_nrm", "goal": "max"}}, records)
    scheduler = SimpleNamespace(folder=tmp_path, say=lambda text: None)
    with pytest.raises(RunError) as e:
        promote(scheduler, manifest, records, {"t0": 5, "t1": 5}, 0, 2)
    assert str(e.value) == ("rung 1 cannot be ranked by tiny/acc_nrm: no trial recorded it; the trials recorded "
                            "tiny/acc, tiny/acc_norm: set SWEEP metric=tiny/acc_norm and run slo sweep again (the "
                            "trials are kept: the rung is ranked when the sweep runs again)")
    assert manifest.rungs == [] and all(t.status == "stopped" for t in manifest.trials)


# ---------------------------------------------------------------- the manifest

def test_changing_the_metric_reruns_nothing_and_a_manifest_from_before_scores_reads(tmp_path):
    old = {"swept": {"learning_rate": "1e-3,3e-3"}, "settings": {"trials": None, "seed": None, "halving": 2,
                                                                 "rungs": 2}}
    new = {**old, "settings": {**old["settings"], "metric": "tiny/acc", "goal": "max"}}
    assert changes(old, new) == [] and changes(old, {**new, "settings": {**new["settings"], "rungs": 3}}) == \
        ["rungs: 2 -> 3"]
    record = {"name": "t0", "values": {"learning_rate": 0.001}, "status": "finished", "rung": 1, "error": None,
              "best_val_loss": 2.0, "iters": 10}  # no score: written before there were scores
    (tmp_path / "sweep.json").write_text(json.dumps({"format": 1, "definition": old, "trials": [record],
                                                     "rungs": []}))
    manifest = read_manifest(tmp_path)
    assert manifest.trials[0].score is None and manifest.ranking == Ranking()
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path).trials[0] == manifest.trials[0]


@pytest.mark.parametrize("settings_, why", [
    ({"metric": 3}, "its metric 3 must be val_loss or TASK/METRIC"),
    ({"goal": "most"}, "its goal 'most' must be min or max"),
    ([], "its definition's settings are not an object"),
])
def test_a_damaged_metric_or_goal_in_sweep_json_says_so(tmp_path, settings_, why):
    (tmp_path / "sweep.json").write_text(json.dumps({"format": 1, "definition": {"settings": settings_},
                                                     "trials": [], "rungs": []}))
    with pytest.raises(RunError) as e:
        read_manifest(tmp_path)
    assert why in str(e.value) and "Move it away" in str(e.value)


# ---------------------------------------------------------------- a sweep ranked by a local task, for real

@pytest.fixture(scope="module")
def ranked_sweep(tmp_path_factory):
    pytest.importorskip("lm_eval")
    from test_eval_training import TASK, write_task

    tmp = tmp_path_factory.mktemp("by_task")
    tasks = write_task(tmp / "tasks")
    config = tiny_config(tmp, "sweep", max_iters=10, extra=(
        f"LOGGING eval_tasks={TASK} eval_tasks_path='{tasks}'\n"
        f"SWEEP learning_rate=2e-3,3e-2,1e-2 halving=3 rungs=2 metric={TASK}/acc_norm\n"))
    r = subprocess.run([sys.executable, "-m", "slo.cli", "sweep", str(config)], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp / "sweep", f"{TASK}/acc_norm", r


def evaluation(folder: Path, it: int) -> dict:
    recs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in recs if r["iter"] == it and "val_loss" in r)


def test_the_rung_is_ranked_by_the_task_scores_at_its_end(ranked_sweep):
    folder, metric, r = ranked_sweep
    m = json.loads((folder / "sweep.json").read_text())
    (rung,) = m["rungs"]
    assert rung["metric"] == metric and rung["max_iters"] == 4  # ceil(10 / 3): stop_iter=4, where the tasks ran
    names = [t["name"] for t in m["trials"]]
    at_end = {name: evaluation(folder / name, 4)[metric] for name in names}
    assert dict(rung["ranking"]) == at_end
    loss = {name: evaluation(folder / name, 4)["val_loss"] for name in names}
    best = max(names, key=lambda n: (at_end[n], -loss[n], -names.index(n)))  # a tie: the lower val loss
    assert rung["promoted"] == [best]
    assert {t["name"]: t["status"] for t in m["trials"]} == {n: "finished" if n == best else "pruned" for n in names}
    assert "ranked by tiny_mc/acc_norm, highest first" in r.stdout and f"tiny_mc/acc_norm {at_end[best]:.4f}" in r.stdout


def test_the_table_ranks_by_the_metric_and_shows_its_best(ranked_sweep):
    folder, metric, _ = ranked_sweep
    header, *rows = format_sweep_table(folder).splitlines()[:-1]
    assert header.split()[:6] == ["learning_rate", "ITERS", "BEST", "VAL", metric, "(LAST)"]
    m = json.loads((folder / "sweep.json").read_text())
    last = {t["name"]: evaluation(folder / t["name"], t["iters"])[metric] for t in m["trials"]}
    assert {t["name"]: t["score"] for t in m["trials"]} == last
    shown = [float(row.split()[3]) for row in rows]
    assert shown == sorted(shown, reverse=True) and sorted(shown) == sorted(round(v, 4) for v in last.values())


@pytest.mark.parametrize("ranking, values, expected", [
    (Ranking(), [3.0, None, 2.0, float("nan"), 2.5], 2.0),  # the best val loss
    (Ranking("t/acc", "max"), [0.75, 0.5, None, float("inf")], 0.5),  # a task's last score, not an early one
    (Ranking("t/ppl", "min"), [9.0, 12.0], 12.0),
    (Ranking("t/acc", "max"), [None, True], None),
])
def test_a_trial_s_score(ranking, values, expected):
    assert ranking.score(values) == expected
