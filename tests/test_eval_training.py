"""LOGGING eval_tasks: lm-evaluation-harness's tasks as part of a run's evaluations, their scores in
metrics.jsonl at the right iterations (a resumed run's too, none twice), equal to what the harness gives
on the checkpoint saved there; an unknown task fails before the first step; the rules; slo plot and slo
runs show the scores. Local tasks only (JSONL under tmp_path), never a download."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ["HF_DATASETS_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"  # before datasets reads them

from tiny_run import metrics, tiny_config  # noqa: E402

from slo import cli  # noqa: E402

lm_eval = pytest.importorskip("lm_eval")

TASK = "tiny_mc"
MC = [{"question": f"def f{i}(x):\n    return x *", "choices": [" 1", " 2", " 3", " 4"], "label": i % 4}
      for i in range(8)]
MAX_ITERS, INTERVAL = 10, 8  # evaluations at 0, 4, 8 and 10; the tasks at 0, 8 and 10 (the last)
TASK_ITERS = [0, 8, 10]


def write_task(folder: Path) -> Path:
    """A multiple-choice task reading a JSONL file beside its YAML (dataset_path: json)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{TASK}.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in MC))
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{label}}'\nmetric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n")
    return folder


def task_config(tmp_path: Path, out: str, extra: str = "", tasks: str = TASK) -> Path:
    folder = write_task(tmp_path / "tasks")
    return tiny_config(tmp_path, out, max_iters=MAX_ITERS, extra=(
        f"LOGGING eval_tasks={tasks} eval_tasks_interval={INTERVAL} eval_tasks_path='{folder}'\n" + extra))


def train(config: Path, *overrides: str) -> int:
    return cli.main(["train", str(config), *overrides])


def records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def task_scores(out_dir: Path) -> dict[int, dict[str, float]]:
    """iter -> the task/metric scores of the evaluation there, for the evaluations that have them."""
    out = {}
    for rec in records(out_dir):
        scores = {k: v for k, v in rec.items() if "/" in k}
        if scores:
            assert "val_loss" in rec and rec["iter"] not in out, rec  # in an evaluation's record, once
            out[rec["iter"]] = scores
    return out


def checkpoint_scores(folder: Path) -> dict[str, float]:
    """The harness's scores on the run's ckpt.pt, through SloLM and simple_evaluate directly."""
    from lm_eval.tasks import TaskManager

    from slo.evals.lm import SloLM
    from slo.evals.tasks import flat_scores
    from slo.runner.checkpoint.store import load_checkpoint, model_from_checkpoint
    from slo.runner.sample import tokenizer_for

    ckpt = load_checkpoint(folder)
    lm = SloLM(model_from_checkpoint(ckpt), tokenizer_for(ckpt, folder), batch_size=4)
    results = lm_eval.simple_evaluate(model=lm, tasks=[TASK], task_manager=TaskManager(
        include_path=str(folder.parent / "tasks")), log_samples=False)
    return flat_scores(results)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run straight through, with the tasks (and TensorBoard)."""
    tmp = tmp_path_factory.mktemp("tasks_run")
    assert train(task_config(tmp, "out", extra="LOGGING tensorboard_log=True\n")) == 0
    return tmp / "out"


def test_the_scores_are_in_the_evaluations_at_the_interval_and_the_last(run, capsys):
    scores = task_scores(run)
    assert sorted(scores) == TASK_ITERS
    for values in scores.values():
        assert set(values) == {f"{TASK}/acc", f"{TASK}/acc_norm"}
        assert all(0 <= v <= 1 for v in values.values())
    assert sorted(metrics(run)[1]) == [0, 4, 8, 10]  # every evaluation still there


def test_tensorboard_gets_the_scores_under_their_names(run):
    pytest.importorskip("tensorboard")
    from test_report import scalars

    logged = scalars(run / "tensorboard")
    for name in (f"{TASK}/acc", f"{TASK}/acc_norm"):
        assert logged[name] == [(it, pytest.approx(s[name])) for it, s in sorted(task_scores(run).items())]


def test_the_scores_are_the_harness_s_on_the_checkpoint_saved_there(run):
    assert task_scores(run)[MAX_ITERS] == pytest.approx(checkpoint_scores(run), abs=1e-9)


def test_the_tasks_leave_the_run_s_random_streams_and_training_as_they_were(run, tmp_path):
    """The harness seeds every stream; dropout (0.1 here) must draw as in a run without the tasks."""
    plain = tiny_config(tmp_path, "plain", max_iters=MAX_ITERS)
    assert train(plain) == 0
    assert metrics(run) == metrics(tmp_path / "plain")


def test_a_run_stopped_and_resumed_scores_where_it_stopped_and_then_as_straight_through(run, tmp_path, capsys):
    config = task_config(tmp_path, "resumed")
    assert train(config, "--stop_iter=6") == 0
    assert sorted(task_scores(tmp_path / "resumed")) == [0, 6]  # stop_iter is this run's last evaluation
    assert train(config, "--init_from=resume") == 0
    assert sorted(task_scores(tmp_path / "resumed")) == [0, 6, 8, 10]  # task_scores asserts none is twice
    resumed, straight = task_scores(tmp_path / "resumed"), task_scores(run)
    for it in TASK_ITERS:  # the scores of the run straight through
        assert resumed[it] == pytest.approx(straight[it], abs=1e-9)
    assert [r["iter"] for r in records(tmp_path / "resumed") if "val_loss" in r] == [0, 4, 6, 8, 10]
    assert capsys.readouterr().out.count("tasks 0:") == 1


def test_an_unknown_task_fails_before_the_first_step_naming_the_closest(tmp_path, capsys):
    config = task_config(tmp_path, "unknown", tasks="tiny_mcc")
    assert train(config) == 2
    err = capsys.readouterr().err
    assert "eval_tasks: unknown task 'tiny_mcc' (closest: tiny_mc" in err
    assert f"{config}:" in err  # the line that set it
    assert not (tmp_path / "unknown" / "metrics.jsonl").exists()


def test_without_eval_tasks_path_an_unknown_task_says_how_to_add_one(tmp_path, capsys):
    config = tiny_config(tmp_path, "own", extra="LOGGING eval_tasks=hellaswagg\n")
    assert train(config) == 2
    err = capsys.readouterr().err
    assert "closest: hellaswag" in err and "a task of your own needs eval_tasks_path=DIR" in err


def test_without_the_harness_the_run_stops_before_its_first_step_saying_what_to_install(tmp_path, capsys,
                                                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval raises ImportError
    monkeypatch.delitem(sys.modules, "slo.evals.lm", raising=False)  # imported again, it imports lm_eval
    assert train(task_config(tmp_path, "missing")) == 1
    assert "eval_tasks needs lm-evaluation-harness: pip install 'slo[eval]'" in capsys.readouterr().err
    assert not (tmp_path / "missing" / "metrics.jsonl").exists()


def test_eval_only_evaluates_the_losses_alone(tmp_path, capsys):
    assert train(task_config(tmp_path, "only", tasks="no_such_task"), "--eval_only=True") == 0
    assert "eval 0:" in capsys.readouterr().out


def test_a_task_folder_that_is_not_one_is_a_config_error(tmp_path, capsys):
    config = task_config(tmp_path, "nofolder", extra=f"LOGGING eval_tasks_path='{tmp_path / 'none'}'\n")
    assert train(config) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("extra, expected", [
    ("LOGGING eval_tasks=a eval_tasks_interval=6\n", "eval_tasks_interval=6 is not a multiple of eval_interval=4"),
    ("LOGGING eval_tasks=a\nDDP strategy=fsdp\n", "slo eval OUT_DIR --tasks NAMES"),
    ("LOGGING eval_tasks='a,,b'\n", "eval_tasks=a,,b is out of range"),
])
def test_the_rules(tmp_path, capsys, extra, expected):
    assert cli.main(["check", str(tiny_config(tmp_path, extra=extra))]) == 2
    assert expected in capsys.readouterr().err


@settings(max_examples=60, deadline=None)
@given(every=st.integers(1, 10_000), n=st.integers(1, 10**6))
def test_eval_tasks_interval_is_fine_exactly_when_a_multiple_of_eval_interval(every, n):
    from slo import loads
    from slo.errors import ConfigError

    text = f"LOGGING eval_interval={every} eval_tasks=a eval_tasks_interval={n}\n"
    if n % every == 0:
        assert loads(text).logging.eval_tasks_interval == n
    else:
        with pytest.raises(ConfigError, match=f"eval_tasks_interval={n} is not a multiple of eval_interval={every}"):
            loads(text)


def test_slo_runs_shows_the_last_score_of_each_task_metric(run, capsys):
    assert cli.main(["runs", str(run.parent)]) == 0
    out = capsys.readouterr().out
    last = task_scores(run)[MAX_ITERS]
    for name, value in last.items():
        assert f"{name} {value:.4f}" in out


def test_slo_plot_has_a_panel_per_task_metric(run, tmp_path):
    pytest.importorskip("matplotlib")
    from slo.report.plot import plot_runs
    from slo.report.run_folder import read_run

    titles = [ax.get_title() for ax in plot_runs([read_run(run)]).axes]
    assert f"{TASK}/acc" in titles and f"{TASK}/acc_norm" in titles
    assert cli.main(["plot", str(run), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 0


def test_two_ddp_ranks_score_on_rank_0_while_the_other_waits(tmp_path):
    import subprocess

    from test_ddp import command, environment

    config = task_config(tmp_path, "ddp")
    proc = subprocess.run(command(config), env=environment(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(task_scores(tmp_path / "ddp")) == TASK_ITERS
    assert proc.stdout.count("tasks 0:") == 1  # rank 0 alone


def test_an_unknown_task_in_a_ddp_run_is_one_line(tmp_path):
    import subprocess

    from test_ddp import command, environment

    config = task_config(tmp_path, "ddp_unknown", tasks="tiny_mcc")
    proc = subprocess.run(command(config), env=environment(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "rank 0" in proc.stderr and "eval_tasks: unknown task 'tiny_mcc' (closest: tiny_mc" in proc.stderr


def test_the_harness_s_results_flatten_to_task_metric_numbers():
    from slo.evals.tasks import flat_scores

    results = {"results": {
        "hellaswag": {"alias": "hellaswag", "acc,none": 0.25, "acc_stderr,none": 0.01, "acc_norm,none": 0.5,
                      "acc_norm_stderr,none": "N/A"},
        "gsm8k": {"exact_match,strict-match": 0.0, "exact_match,flexible-extract": 1, "sample_len": 8,
                  "flag,none": True},
    }}
    assert flat_scores(results) == {"hellaswag/acc": 0.25, "hellaswag/acc_norm": 0.5,
                                    "gsm8k/exact_match,strict-match": 0.0, "gsm8k/exact_match,flexible-extract": 1.0}
    assert flat_scores(None) == {} and flat_scores({"results": None}) == {}


@pytest.mark.parametrize("value", ['"0.5"', "[0.5]", "{}", "true", str(1 << 70)])
def test_a_damaged_task_score_makes_the_line_no_record(tmp_path, capsys, value):
    from slo.outdir.files import as_record

    good = '{"iter": 4, "val_loss": 2.0, "train_loss": 2.1, "tiny_mc/acc": 0.5}'
    damaged = '{"iter": 8, "val_loss": 1.9, "train_loss": 2.0, "tiny_mc/acc": %s}' % value
    assert as_record(good) is not None and as_record(damaged) is None
    assert as_record(damaged.replace(value, "null")) is not None  # a score that was not finite
    out = tmp_path / "damaged"
    out.mkdir()
    (out / "metrics.jsonl").write_text(good + "\n" + damaged + "\n")
    assert cli.main(["runs", str(tmp_path)]) == 0
    assert "tiny_mc/acc 0.5000" in capsys.readouterr().out  # the damaged line skipped, the good one shown
