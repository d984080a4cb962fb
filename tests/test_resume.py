"""Checkpoints of a run: exact resume, stop signals, NaN, incompatible configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import torch

import slo
from slo.runner.checkpoint.store import load_checkpoint
from slo.runner.model.gpt import GPT
from slo.runner.train_command import main
from slo.runner.trainer import Trainer
from tiny_run import metrics, sigterm_after_steps, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(config, *overrides):
    return main([str(config), *overrides])


def weights(out_dir):
    return load_checkpoint(out_dir / "ckpt.pt")["model"]


def test_resumed_run_matches_uninterrupted_run_exactly(tmp_path):
    assert train(tiny_config(tmp_path, "whole")) == 0
    assert train(tiny_config(tmp_path, "split"), "--max_iters=4") == 0
    assert load_checkpoint(tmp_path / "split" / "ckpt.pt")["iter_num"] == 4
    assert train(tiny_config(tmp_path, "split"), "--init_from=resume") == 0

    whole, whole_val = metrics(tmp_path / "whole")
    split, split_val = metrics(tmp_path / "split")
    assert sorted(whole) == sorted(split) == list(range(8))
    assert split == whole  # exact float equality, step by step
    assert split_val == whole_val
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stop_between_evaluations_resumes_exactly(tmp_path, capsys):
    assert train(tiny_config(tmp_path, "whole")) == 0
    cfg = slo.load(tiny_config(tmp_path, "split"))
    trainer = Trainer(cfg)
    original = trainer.train_step

    def step_then_signal(*args, **kwargs):
        loss = original(*args, **kwargs)
        if trainer.progress.iter_num == 2:  # the step at iter 2 runs to its end first
            trainer.signals.signum = signal.SIGTERM
        return loss

    trainer.train_step = step_then_signal
    result = trainer.train()
    assert (result.stopped_by, result.exit_status, result.iter_num) == (signal.SIGTERM, 143, 3)
    assert load_checkpoint(tmp_path / "split" / "ckpt.pt")["iter_num"] == 3
    assert train(tiny_config(tmp_path, "split"), "--init_from=resume") == 0
    assert metrics(tmp_path / "split") == metrics(tmp_path / "whole")


def test_signal_during_an_evaluation_saves_before_another_step(tmp_path, capsys):
    trainer = Trainer(slo.load(tiny_config(tmp_path, "run")))
    original = trainer._after_eval

    def after_eval(*args):
        original(*args)
        if trainer.progress.iter_num == 4:
            trainer.signals.signum = signal.SIGINT

    trainer._after_eval = after_eval
    result = trainer.train()
    assert (result.iter_num, result.exit_status) == (4, 130)
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["iter_num"] == 4
    assert "SIGINT: saved" in capsys.readouterr().out


def test_sigterm_saves_a_loadable_checkpoint_and_exits_143(tmp_path):
    config = tiny_config(tmp_path, "run", max_iters=100000)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "slo.runner", str(config), "--lr_decay_iters=100000",
                             "--eval_interval=100000"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = sigterm_after_steps(proc, out, 3)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "SIGTERM: saved" in stdout
    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt["iter_num"] >= 3
    assert train(config, "--init_from=resume", f"--max_iters={ckpt['iter_num'] + 1}",
                 "--lr_decay_iters=100000", "--eval_interval=100000") == 0


def _nan_at_train_call(monkeypatch, call):
    """GPT.forward returns a NaN loss at its call-th call in training mode."""
    original = GPT.forward
    calls = []

    def forward(self, idx, targets=None):
        logits, loss = original(self, idx, targets)
        if self.training and loss is not None:
            calls.append(1)
            if len(calls) == call:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", forward)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path, "run")
    _nan_at_train_call(monkeypatch, call=2 * 5 + 1)  # 2 micro-steps per iter: the first of iter 5
    assert train(config, "--eval_interval=2") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the loss is nan at iter 5") and "Traceback" not in err
    assert "(iter 4), is kept" in err
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["iter_num"] == 4
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_between_logged_steps_nothing_is_read_back_and_a_nan_there_is_caught_before_any_save(tmp_path, monkeypatch,
                                                                                             capsys):
    # checked: the logged steps (0, 4) and the last step before each evaluation (3, 7); 1, 2, 5, 6 are not
    cfg = slo.load(tiny_config(tmp_path, "run"), overrides=["--log_interval=4", "--eval_interval=4"])
    trainer = Trainer(cfg)
    reads = []
    mean = trainer.group.mean
    trainer.group.mean = lambda t: reads.append(t.shape[0]) or mean(t)
    assert trainer.train().iter_num == 8
    assert reads == [1, 3, 1, 3]  # steps 0; 1-3; 4; 5-7: four reads of the device for eight steps
    # a NaN at step 5, which is not checked on its own: found at step 7, before the evaluation at 8 saves
    _nan_at_train_call(monkeypatch, call=2 * 5 + 1)
    assert train(tiny_config(tmp_path, "nan"), "--log_interval=4", "--eval_interval=4") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the loss is nan at iter 5; found at iter 7, the run stopped and saved nothing "
                          "after it") and "(iter 4), is kept" in err
    ckpt = load_checkpoint(tmp_path / "nan" / "ckpt.pt")
    assert ckpt["iter_num"] == 4 and all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_nan_before_any_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    _nan_at_train_call(monkeypatch, call=1)
    assert train(tiny_config(tmp_path, "run")) == 1
    err = capsys.readouterr().err
    assert "at iter 0" in err and "No checkpoint was saved" in err
    assert not (tmp_path / "run" / "ckpt.pt").exists()


def test_resume_with_an_incompatible_config_is_a_clear_error(tmp_path, capsys):
    config = tiny_config(tmp_path, "run")
    assert train(config, "--max_iters=4") == 0
    capsys.readouterr()
    assert train(config, "--init_from=resume", "--n_embd=64") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"n_embd=64 (from cli) but the checkpoint {tmp_path / 'run' / 'ckpt.pt'} " \
        "has n_embd=32" in err
    assert "n_layer" not in err  # set in the file to the checkpoint's value: not named
    assert "Traceback" not in err


def test_resume_takes_the_shape_from_the_checkpoint(tmp_path, capsys):
    """Shape keys the config leaves at their defaults come from the checkpoint: resuming needs none of them."""
    config = tiny_config(tmp_path, "run")
    assert train(config, "--max_iters=4", "--n_layer=3", "--n_embd=48", "--n_head=3", "--use_rope=true") == 0
    shapeless = tmp_path / "resume.config"  # the same run's config without its MODEL line
    shapeless.write_text("".join(line for line in config.read_text().splitlines(True) if not line.startswith("MODEL")))
    assert train(shapeless, "--init_from=resume", "--max_iters=6") == 0
    args = load_checkpoint(tmp_path / "run" / "ckpt.pt")["model_args"]
    assert (args["n_layer"], args["n_embd"], args["n_head"], args["use_rope"]) == (3, 48, 3, True)
    explained = (tmp_path / "run" / "config.explain.txt").read_text()
    assert "n_embd = 48" in explained and f"# <the checkpoint {tmp_path / 'run' / 'ckpt.pt'}>" in explained


def test_a_smaller_block_size_crops_the_positions_of_a_checkpoint(tmp_path, capsys):
    config = tiny_config(tmp_path, "run")
    assert train(config, "--max_iters=4") == 0
    before = load_checkpoint(tmp_path / "run" / "ckpt.pt")["model"]["transformer.wpe.weight"]
    assert train(config, f"--init_from={tmp_path / 'run'}", "--out_dir=" + str(tmp_path / "short"),
                 "--block_size=8", "--max_iters=1") == 0
    after = load_checkpoint(tmp_path / "short" / "ckpt.pt")
    assert after["model_args"]["block_size"] == 8 and after["model"]["transformer.wpe.weight"].shape[0] == 8
    capsys.readouterr()
    assert train(config, "--init_from=resume", "--block_size=8") == 1  # resuming cannot crop its own table
    assert "would crop the position table of the run being resumed" in capsys.readouterr().err
    assert train(config, "--init_from=resume", "--block_size=32") == 1
    assert "block_size=32 (from cli) is longer than the 16 positions" in capsys.readouterr().err
    del before


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert train(tiny_config(tmp_path, "run"), "--init_from=resume") == 1
    err = capsys.readouterr().err
    assert "init_from=resume but" in err and "does not exist" in err


def test_finetune_from_a_checkpoint_path_starts_at_iter_zero(tmp_path, capsys):
    assert train(tiny_config(tmp_path, "base"), "--max_iters=4") == 0
    base = tmp_path / "base" / "ckpt.pt"
    assert train(tiny_config(tmp_path, "tuned"), f"--init_from={base}", "--max_iters=2", "--dropout=0.0") == 0
    out = capsys.readouterr().out
    assert f"starting from the weights of the checkpoint {base} (iter 4)" in out
    tuned = load_checkpoint(tmp_path / "tuned" / "ckpt.pt")
    assert tuned["iter_num"] == 2
    assert tuned["config"]["init_from"] == str(base)


def test_checkpoint_holds_nanogpt_keys_and_resume_state(tmp_path):
    assert train(tiny_config(tmp_path, "run"), "--max_iters=4") == 0
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    for key in ("model", "optimizer", "model_args", "iter_num", "best_val_loss", "config",
                "rng", "data", "schema_version"):
        assert key in ckpt
    assert ckpt["config"] == slo.load(tiny_config(tmp_path, "run"), overrides=["--max_iters=4"]).to_dict()
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    assert json.loads(json.dumps(ckpt["config"])) == ckpt["config"]  # plain types only


def test_metrics_after_resume_have_each_step_once(tmp_path):
    config = tiny_config(tmp_path, "run")
    assert train(config, "--max_iters=6") == 0  # saved at iter 4 (eval) and 6 (the end)
    assert train(config, "--init_from=resume") == 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["iter"] for r in lines if "loss" in r]
    evals = [r["iter"] for r in lines if "val_loss" in r]
    assert steps == list(range(8))
    assert evals == [0, 4, 6, 8]


def test_a_scratch_run_over_an_earlier_one_keeps_its_metrics(tmp_path, capsys):
    config = tiny_config(tmp_path, "run", max_iters=4)
    assert train(config) == 0
    earlier = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert train(config, "--learning_rate=3e-3") == 0
    assert "metrics.jsonl is now metrics.previous.jsonl" in capsys.readouterr().out
    assert (tmp_path / "run" / "metrics.previous.jsonl").read_text() == earlier
    assert (tmp_path / "run" / "metrics.jsonl").read_text() != earlier


def test_a_closed_console_pipe_does_not_stop_the_run(tmp_path):
    config = tiny_config(tmp_path, "run")
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "slo.runner", str(config)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does: every later line meets a closed pipe
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["iter_num"] == 8
