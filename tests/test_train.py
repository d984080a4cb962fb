"""The training entry points and loop: files a run writes, errors, ENV, compile fallback, devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import slo
from slo.cli import main as slo_main
from slo.errors import RunError
from slo.runner import device as device_module
from slo.runner.checkpoint.store import load_checkpoint
from slo.runner.train_command import main
from slo.runner.trainer import Trainer
from tiny_run import make_dataset, metrics, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs an entry point with a spy that records, at the moment torch is first
# imported, the value of SLO_TEST_MARK (or that torch was never imported).
SPY = textwrap.dedent("""
    import importlib.abc, os, runpy, sys

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" and not os.path.exists(os.environ["SPY_OUT"]):
                with open(os.environ["SPY_OUT"], "w") as f:
                    f.write(os.environ.get("SLO_TEST_MARK", "<unset>"))
            return None

    sys.meta_path.insert(0, Spy())
    entry, sys.argv = sys.argv[1], sys.argv[1:]
    if entry.endswith(".py"):
        runpy.run_path(entry, run_name="__main__")
    else:
        runpy.run_module(entry, run_name="__main__", alter_sys=True)
""")


def spy_run(tmp_path, entry, *args):
    spy_out = tmp_path / "torch_imported_with.txt"
    env = {**os.environ, "SPY_OUT": str(spy_out), "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    env.pop("SLO_TEST_MARK", None)
    proc = subprocess.run([sys.executable, "-c", SPY, entry, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc, (spy_out.read_text() if spy_out.exists() else None)


# ---------------------------------------------------------------- entry points


def test_train_py_puts_env_in_place_before_torch_is_imported(tmp_path):
    config = tiny_config(tmp_path, "run", extra="ENV SLO_TEST_MARK=from-config\n", max_iters=1)
    proc, mark = spy_run(tmp_path, "train.py", config)
    assert proc.returncode == 0, proc.stderr
    assert mark == "from-config"
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["iter_num"] == 1


def test_config_error_exits_2_before_torch_is_imported(tmp_path):
    bad = tmp_path / "bad.config"
    bad.write_text("MODEL n_layer=2 n_embd=100 n_head=6\nDATA batch_sise=4\n")
    proc, mark = spy_run(tmp_path, "slo.runner", bad)
    assert proc.returncode == 2
    assert mark is None  # torch was never imported
    assert "Traceback" not in proc.stderr
    assert "bad.config:1:" in proc.stderr and "not divisible by n_head=6" in proc.stderr
    assert "did you mean batch_size?" in proc.stderr and "2 errors" in proc.stderr


def test_bad_override_is_a_config_error(tmp_path, capsys):
    assert main([str(tiny_config(tmp_path)), "--learning_rate=fast"]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "Traceback" not in err


def test_slo_train_runs_the_same_trainer(tmp_path, capsys):
    assert slo_main(["train", str(tiny_config(tmp_path, "run", max_iters=2))]) == 0
    assert load_checkpoint(tmp_path / "run" / "ckpt.pt")["iter_num"] == 2


# ---------------------------------------------------------------- what a run writes


def test_a_run_writes_config_meta_metrics_and_checkpoint(tmp_path, capsys):
    config = tiny_config(tmp_path, "run")
    assert main([str(config), "--max_iters=5"]) == 0
    out = tmp_path / "run"
    cfg = slo.load(config, overrides=["--max_iters=5"])
    assert json.loads((out / "config.json").read_text()) == json.loads(slo.dumps(cfg, "json"))
    explain = (out / "config.explain.txt").read_text()
    assert "max_iters = 5" in explain and "# cli" in explain
    origins = json.loads((out / "config.origins.json").read_text())
    assert origins == cfg.origins() and origins["max_iters"][0] == "cli"
    assert json.loads((out / "meta.json").read_text()) == {"tokenizer": "byte", "vocab_size": 256}
    train, val = metrics(out)
    assert sorted(train) == [0, 1, 2, 3, 4] and sorted(val) == [0, 4, 5]
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[1])
    assert set(record) >= {"iter", "tokens", "loss", "lr", "tokens_per_s", "mfu", "time"}
    assert record["tokens"] == 2 * 4 * 16  # accumulation x batch x block
    assert load_checkpoint(out / "ckpt.pt")["iter_num"] == 5
    console = capsys.readouterr().out
    assert "iter 0: loss" in console and "tok/s" in console and "mfu" in console and "MiB" in console
    assert "eval 5: train loss" in console


def test_log_interval_and_the_last_step(tmp_path):
    assert main([str(tiny_config(tmp_path, "run")), "--max_iters=7", "--log_interval=3"]) == 0
    assert sorted(metrics(tmp_path / "run")[0]) == [0, 3, 6]


def test_training_lowers_the_loss(tmp_path):
    assert main([str(tiny_config(tmp_path, "run")), "--max_iters=30", "--lr_decay_iters=30",
                 "--eval_interval=30", "--dropout=0"]) == 0
    _, val = metrics(tmp_path / "run")
    assert val[30] < val[0] - 1.0


def test_eval_only_prints_losses_and_writes_nothing(tmp_path, capsys):
    config = tiny_config(tmp_path, "run")
    assert main([str(config), "--eval_only=True"]) == 0
    assert "eval 0: train loss" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


def test_keep_best_checkpoint_only_when_always_save_is_off(tmp_path):
    config = tiny_config(tmp_path, "run")
    assert main([str(config), "--always_save_checkpoint=False", "--learning_rate=1e-9", "--min_lr=0"]) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    _, val = metrics(tmp_path / "run")
    assert ckpt["best_val_loss"] == min(val[4], val[8])


# ---------------------------------------------------------------- the step


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    cfg = slo.load(tiny_config(tmp_path, "run"), overrides=["--dropout=0"])
    trainer = Trainer(cfg)
    x, y = trainer.next_batch()
    x2, y2 = trainer.next_batch()
    for a, b in ((x, y), (x2, y2)):
        trainer.forward_backward(a, b)
    accumulated = [p.grad.clone() for p in trainer.model.parameters()]
    trainer.optimizer.zero_grad()
    _, loss = trainer.model(torch.cat((x, x2)), torch.cat((y, y2)))
    loss.backward()
    for acc, full in zip(accumulated, (p.grad for p in trainer.model.parameters())):
        torch.testing.assert_close(acc, full)


def test_grad_clip_zero_disables_clipping(tmp_path):
    cfg = slo.load(tiny_config(tmp_path, "run"), overrides=["--grad_clip=0"])
    trainer = Trainer(cfg)
    trainer.forward_backward(*trainer.next_batch())
    assert trainer.clip_gradients() is None
    cfg = slo.load(tiny_config(tmp_path, "run"), overrides=["--grad_clip=1e-6"])
    trainer = Trainer(cfg)
    trainer.forward_backward(*trainer.next_batch())
    norm = trainer.clip_gradients()
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    assert norm > 1e-3 and after == pytest.approx(1e-6, rel=1e-3)


# ---------------------------------------------------------------- clear errors


def run_error(capsys, *argv):
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_missing_dataset(tmp_path, capsys):
    err = run_error(capsys, tiny_config(tmp_path), "--dataset=nothing_here")
    assert "nothing_here" in err and "slo prepare" in err


def test_block_size_longer_than_the_data(tmp_path, capsys):
    make_dataset(tmp_path / "data", "short", text="x" * 2000, val_fraction=0.01)
    err = run_error(capsys, tiny_config(tmp_path), "--dataset=short", "--block_size=64")
    assert "block_size=64" in err and "too short" in err


def test_vocab_size_smaller_than_the_data(tmp_path, capsys):
    err = run_error(capsys, tiny_config(tmp_path), "--vocab_size=50")
    assert "token id" in err and "vocab_size" in err


def test_cuda_when_there_is_none(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = run_error(capsys, tiny_config(tmp_path), "--device=cuda")
    assert "CUDA is not available" in err


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_has("wandb"), reason="wandb is installed here")
def test_wandb_without_the_package(tmp_path, capsys):
    err = run_error(capsys, tiny_config(tmp_path), "--wandb_log=True")
    assert "pip install 'slo[wandb]'" in err


def test_unwritable_out_dir(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    err = run_error(capsys, tiny_config(tmp_path), f"--out_dir={tmp_path / 'file' / 'out'}")
    assert "out_dir" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_the_metrics_is_a_run_error(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to("/dev/full")  # every write fails with ENOSPC
    err = run_error(capsys, tiny_config(tmp_path))
    assert "cannot write" in err and "metrics.jsonl" in err and "disk space" in err


# ---------------------------------------------------------------- devices and compile


def test_auto_device_and_dtype_on_this_machine():
    dev = device_module.pick_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "mps" if device_module._mps_available() else "cpu"
    assert dev.type == expected
    if dev.type == "cpu":
        fast = device_module.cpu_has_fast_bf16()
        assert device_module.pick_dtype("auto", dev) == (torch.bfloat16 if fast else torch.float32)
    assert device_module.pick_dtype("float16", torch.device("cpu")) == torch.float16


def test_compile_falls_back_when_no_compiler(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert main([str(tiny_config(tmp_path, "run", max_iters=2)), "--compile=True"]) == 0
    out = capsys.readouterr().out
    assert "compile: no C++ compiler found" in out and "continuing without torch.compile" in out
    assert "not compiled" in out


class BrokenCompile(torch.nn.Module):
    """What torch.compile returns when the backend cannot build: fails on its first call."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, *args):
        raise RuntimeError("backend exploded\nmore detail")


def test_compile_falls_back_when_compilation_fails(tmp_path, capsys, monkeypatch):
    assert main([str(tiny_config(tmp_path, "plain", max_iters=2))]) == 0
    monkeypatch.setattr(device_module, "compile_unavailable", lambda device: None)
    monkeypatch.setattr(torch, "compile", BrokenCompile)
    capsys.readouterr()
    assert main([str(tiny_config(tmp_path, "fallback", max_iters=2)), "--compile=True"]) == 0
    out = capsys.readouterr().out
    assert out.count("compile: torch.compile failed (RuntimeError: backend exploded); "
                     "continuing without torch.compile") == 1
    assert metrics(tmp_path / "fallback") == metrics(tmp_path / "plain")  # the same batches, the same losses


def test_float16_uses_a_loss_scaler(tmp_path):
    cfg = slo.load(tiny_config(tmp_path, "run"), overrides=["--dtype=float16"])
    trainer = Trainer(cfg)
    assert trainer.scaler.is_enabled()
    loss = trainer.train_step(trainer.schedule(0), trainer.step_batches())
    assert loss == loss  # finite steps go through the scaler
    assert "scaler" in trainer.state_dict() and trainer.state_dict()["scaler"]


def test_a_trainer_of_several_ranks_needs_a_process_group(tmp_path):
    with pytest.raises(RunError, match="has joined no process group"):
        Trainer(slo.load(tiny_config(tmp_path)), rank=0, world_size=2)


# ---------------------------------------------------------------- the benchmark


def test_bench_runs_both_loops_alike(tmp_path, capsys):
    from slo.runner.bench import main as bench_main

    config = tiny_config(tmp_path, "run")
    report = tmp_path / "bench.json"
    assert bench_main([str(config), "--steps=3", "--warmup=1", "--dropout=0", "--json", str(report)]) == 0
    row = json.loads(report.read_text())["configs"][0]
    slo_side, nanogpt = row["sides"]["slo"], row["sides"]["nanogpt"]
    assert slo_side["optimizer"] == "AdamW fused" and nanogpt["optimizer"] == "AdamW for-loop"
    assert len(slo_side["losses"]) == len(nanogpt["losses"]) == 4
    assert row["max_loss_difference"] < 1e-4  # the same init, the same windows: the same training
    assert row["speedup"] > 0 and set(slo_side["ms"]) == {"data", "forward_backward", "optimizer"}
    assert "speedup" in capsys.readouterr().out


def test_memory_running_out_mid_step_is_one_line_saying_what_to_lower(tmp_path, monkeypatch, capsys):
    def out_of_memory(self, *args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    assert main([str(tiny_config(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory on cpu at batch_size=") and "lower batch_size" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_another_failure_mid_step_is_not_called_out_of_memory(tmp_path, monkeypatch):
    def failure(self, *args, **kwargs):
        raise RuntimeError("a kernel failed")

    monkeypatch.setattr(Trainer, "train_step", failure)
    with pytest.raises(RuntimeError, match="a kernel failed"):
        main([str(tiny_config(tmp_path))])
