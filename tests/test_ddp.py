"""Data-parallel training on the CPU with gloo and 2 processes: the same result as one process,
exact resume, no hang when a rank fails or is killed, SIGTERM, torchrun, and clear errors."""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slo
from slo.errors import RunError
from slo.runner.checkpoint.store import load_checkpoint, model_from_checkpoint
from slo.runner.data.batches import Batches
from slo.runner.distributed.placement import Placement, join_group
from slo.runner.train_command import main
from slo.runner.trainer import Trainer
from tiny_run import metrics, sigterm_after_steps, tiny_config, wait_for_steps

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 300  # seconds; a hang fails the test instead of stalling it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(config, *overrides, nproc=2, entry=("-m", "slo.runner")):
    return [sys.executable, *entry, str(config), f"--nproc_per_node={nproc}",
            f"--master_port={free_port()}", *overrides]


def environment(**extra):
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def train_ddp(config, *overrides, env=None) -> subprocess.CompletedProcess:
    """The run in a subprocess; with SLO_TEST_FAIL_AT in env, through tests/failing_rank.py, which makes a rank fail."""
    entry = (str(REPO / "tests" / "failing_rank.py"),) if "SLO_TEST_FAIL_AT" in (env or {}) else ("-m", "slo.runner")
    proc = subprocess.run(command(config, *overrides, entry=entry), env=environment(**(env or {})),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def weights(out_dir: Path) -> dict:
    return load_checkpoint(out_dir / "ckpt.pt")["model"]


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


# ---------------------------------------------------------------- the same numbers as one process


def test_two_ranks_match_one_process_fed_both_ranks_batches(tmp_path):
    """Rank r draws from its own stream Batches(seed, r). One process that takes rank 0's batch,
    then rank 1's, at every step (gradient_accumulation_steps=2) sees the same global batch;
    DDP averages the two ranks' gradients, so the weights must agree to float32 rounding."""
    config = tiny_config(tmp_path, "ddp", max_iters=4)
    fixed = ["--dropout=0.0"]  # dropout masks come from each rank's own generator
    assert train_ddp(config, *fixed).returncode == 0
    assert load_checkpoint(tmp_path / "ddp" / "ckpt.pt")["iter_num"] == 4

    cfg = slo.load(tiny_config(tmp_path, "one", max_iters=4), overrides=fixed)
    trainer = Trainer(cfg)
    d = cfg.data
    ranks = [Batches(trainer.dataset.train, d.batch_size, d.block_size, "cpu", seed=cfg.train.seed, rank=r)
             for r in (0, 1)]
    calls = itertools.count()

    def both_ranks_batches():  # micro-step 0: rank 0's next batch; micro-step 1: rank 1's
        return ranks[next(calls) % 2].next()

    trainer.next_batch = both_ranks_batches
    assert trainer.train().iter_num == 4
    assert next(calls) == 4 * 2  # every micro-step took one batch

    ddp = weights(tmp_path / "ddp")
    one = trainer.model.state_dict()
    assert ddp.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    ddp_loss, ddp_val = metrics(tmp_path / "ddp")
    one_loss, one_val = metrics(tmp_path / "one")
    assert sorted(ddp_loss) == sorted(one_loss) == [0, 1, 2, 3]
    for it in one_loss:  # the logged loss is the mean over both ranks
        assert ddp_loss[it] == pytest.approx(one_loss[it], rel=1e-5)
    assert ddp_val == pytest.approx(one_val, rel=1e-5)  # rank 0 evaluates the batches one process would


def test_resumed_ddp_run_matches_an_uninterrupted_one_exactly(tmp_path):
    whole = tiny_config(tmp_path, "whole", max_iters=6)  # dropout=0.1: each rank's generator is restored too
    assert train_ddp(whole).returncode == 0
    split = tiny_config(tmp_path, "split", max_iters=6)
    assert train_ddp(split, "--max_iters=3").returncode == 0
    ckpt = load_checkpoint(tmp_path / "split" / "ckpt.pt")
    assert ckpt["iter_num"] == 3 and len(ckpt["ranks"]) == 2
    assert ckpt["ranks"][0]["data"] != ckpt["ranks"][1]["data"]  # each rank has its own stream
    resumed = train_ddp(split, "--init_from=resume")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout

    (split_loss, split_val), (whole_loss, whole_val) = metrics(tmp_path / "split"), metrics(tmp_path / "whole")
    assert split_loss == whole_loss  # exact, step by step
    assert {it: v for it, v in split_val.items() if it != 3} == whole_val  # the split run's end evaluated iter 3
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- failures never hang


def test_a_rank_that_raises_brings_the_run_down(tmp_path):
    config = tiny_config(tmp_path, "run", max_iters=100000)
    proc = train_ddp(config, "--lr_decay_iters=100000", "--eval_interval=100000",
                     env={"SLO_TEST_FAIL_AT": "1:3"})
    assert proc.returncode == 1
    assert re.search(r"error: rank 1 \(pid \d+\) failed: SLO_TEST_FAIL_AT made rank 1 fail at iter 3; "
                     r"the other rank stopped too", proc.stderr), proc.stderr
    train_loss, _ = metrics(tmp_path / "run")
    assert max(train_loss) == 2  # no step after the failure


def test_a_rank_killed_with_sigkill_brings_the_run_down(tmp_path):
    config = tiny_config(tmp_path, "run", max_iters=100000)
    proc = subprocess.Popen(command(config, "--lr_decay_iters=100000", "--eval_interval=100000"), env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        pids = [int(p) for p in re.search(r"\(pids (\d+), (\d+)\)", first).groups()]
        wait_for_steps(proc, tmp_path / "run", 2, RUN_TIMEOUT)
        os.kill(pids[1], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert f"error: rank 1 (pid {pids[1]}) was killed by SIGKILL" in stderr, stderr
    assert "Traceback" not in stderr
    assert gone(pids[0]) and gone(pids[1])


def test_a_hung_rank_ends_in_a_reported_collective_timeout(tmp_path):
    config = tiny_config(tmp_path, "run", max_iters=100000)
    proc = train_ddp(config, "--lr_decay_iters=100000", "--eval_interval=100000",
                     env={"SLO_TEST_FAIL_AT": "1:2:hang", "SLO_DDP_TIMEOUT": "2"})
    assert proc.returncode == 1
    assert re.search(r"error: rank 0 \(pid \d+\) failed: a collective operation timed out after 2 s", proc.stderr)
    assert "SLO_DDP_TIMEOUT=SECONDS" in proc.stderr


def test_sigterm_to_the_launcher_saves_a_loadable_checkpoint(tmp_path):
    config = tiny_config(tmp_path, "run", max_iters=100000)
    out = tmp_path / "run"
    proc = subprocess.Popen(command(config, "--lr_decay_iters=100000", "--eval_interval=100000"), env=environment(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = sigterm_after_steps(proc, out, 3, timeout=RUN_TIMEOUT)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "error" not in stderr
    assert "SIGTERM: saved" in stdout
    ckpt = load_checkpoint(out / "ckpt.pt")
    assert ckpt["iter_num"] >= 3 and len(ckpt["ranks"]) == 2
    model_from_checkpoint(ckpt)  # the weights fit their model


def test_torchrun_launch_trains(tmp_path):
    config = tiny_config(tmp_path, "run", max_iters=2)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}", "-m", "slo.runner", str(config)],
                          env=environment(), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "data-parallel (ddp): 2 ranks, backend gloo" in proc.stdout
    ckpt = load_checkpoint(tmp_path / "run" / "ckpt.pt")
    assert ckpt["iter_num"] == 2 and len(ckpt["ranks"]) == 2


# ---------------------------------------------------------------- clear errors, no processes started


def test_a_busy_master_port_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([str(tiny_config(tmp_path)), "--nproc_per_node=2", f"--master_port={port}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: master_port={port} is in use on 127.0.0.1") and "free port" in err


def test_a_busy_port_at_the_rendezvous_names_master_port(tmp_path, monkeypatch):
    cfg = slo.load(tiny_config(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
        monkeypatch.setenv("MASTER_PORT", str(port))
        with pytest.raises(RunError, match=f"master_port={port} is in use"):
            join_group(cfg, Placement(0, 1, 0, 1), torch.device("cpu"))


def test_nccl_without_cuda_is_a_clear_error(tmp_path, capsys):
    assert main([str(tiny_config(tmp_path)), "--nproc_per_node=2", "--backend=nccl", "--device=auto"]) == 1
    assert "backend=nccl needs CUDA devices" in capsys.readouterr().err


def test_torchrun_world_size_must_divide_the_accumulation(tmp_path, monkeypatch, capsys):
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "3"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert main([str(tiny_config(tmp_path))]) == 1  # gradient_accumulation_steps=2
    err = capsys.readouterr().err
    assert "error: rank 0: gradient_accumulation_steps=2 is not divisible by the world size 3" in err


def test_a_partial_torchrun_environment_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert main([str(tiny_config(tmp_path))]) == 1
    assert "RANK set but WORLD_SIZE, LOCAL_RANK not" in capsys.readouterr().err


def test_a_trainer_of_several_ranks_needs_a_process_group(tmp_path):
    with pytest.raises(RunError, match="has joined no process group"):
        Trainer(slo.load(tiny_config(tmp_path)), rank=0, world_size=2)


def test_a_rank_that_reported_its_error_and_then_died_at_exit_is_named_by_its_report(tmp_path):
    from types import SimpleNamespace

    from slo.runner.launcher import Watchdog

    (tmp_path / "rank1.json").write_text('{"kind": "error", "message": "the loss is nan at iter 3"}')
    ranks = [SimpleNamespace(exitcode=1, pid=10), SimpleNamespace(exitcode=-signal.SIGABRT, pid=11)]
    watchdog = Watchdog(ranks, tmp_path)
    watchdog.exit_order = [1, 0]
    with pytest.raises(RunError, match=r"^rank 1 \(pid 11\) failed: the loss is nan at iter 3; the other rank stopped"):
        watchdog._outcome()
