"""The trainer's collaborators, each made from explicit parts and tested without a Trainer."""

from __future__ import annotations

import math
import os
import signal
import types

import numpy as np
import pytest
import torch

import slo
from slo.errors import RunError
from slo.runner.checkpoint.checkpointer import Checkpointer
from slo.runner.checkpoint.contents import Progress, RunParts
from slo.runner.checkpoint.store import load_checkpoint
from slo.runner.data.batches import Batches
from slo.runner.distributed.collectives import SingleProcessGroup
from slo.runner.evaluator import EVAL_SEED_OFFSET, Evaluator
from slo.runner.guards import CompileFallback, FiniteCheck, Forwards, StopSignals
from slo.runner.metrics.throughput import Throughput
from slo.runner.model.gpt import ModelArgs, build_model
from slo.runner.model.optimizers import make_optimizer
from tiny_run import tiny_config

CPU = torch.device("cpu")
TOKENS = (np.arange(5000) * 7 % 256).astype(np.uint16)


def parts(cfg, seed: int = 0) -> RunParts:
    torch.manual_seed(seed)
    model = build_model(ModelArgs.from_config(cfg, 256), CPU)
    optimizer, _ = make_optimizer(model, cfg.train, CPU)
    batches = Batches(TOKENS, cfg.data.batch_size, cfg.data.block_size, CPU, seed=cfg.train.seed)
    return RunParts(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), batches, SingleProcessGroup())


def one_step(p: RunParts) -> None:
    x, y = p.batches.next()
    _, loss = p.model(x, y)
    loss.backward()
    p.optimizer.step()
    p.optimizer.zero_grad(set_to_none=True)


def test_a_checkpointer_saves_and_restores_every_part_it_is_made_of(tmp_path):
    cfg = slo.load(tiny_config(tmp_path))
    said = []
    ours = parts(cfg)
    checkpointer = Checkpointer(ours, tmp_path / "out", "single", cfg=cfg, args=ours.model.args, meta=None,
                                say=said.append)
    one_step(ours)
    progress = Progress(iter_num=1, best_val_loss=2.5, last_eval_iter=1, elapsed=3.0)
    checkpointer.save(progress)
    assert progress.last_saved_iter == 1 and checkpointer.path == tmp_path / "out" / "ckpt.pt"
    ckpt = load_checkpoint(checkpointer.path)

    theirs = parts(cfg, seed=1)  # other weights: resume loads the optimizer and streams, not the weights
    theirs.model.load_state_dict(ckpt["model"])
    other = Checkpointer(theirs, tmp_path / "out", "single", cfg=cfg, args=theirs.model.args, meta=None,
                         say=said.append)
    source = types.SimpleNamespace(kind="resume", ckpt=ckpt, path=checkpointer.path, name="the checkpoint")
    restored = other.restore(source)
    assert (restored.iter_num, restored.best_val_loss, restored.last_eval_iter, restored.elapsed) == (1, 2.5, 1, 3.0)
    assert said[-1] == f"resuming {checkpointer.path} at iter 1"
    assert theirs.batches.state_dict() == ours.batches.state_dict()
    rng = torch.get_rng_state()  # the saved one, restored: both steps draw their dropout from it
    one_step(theirs)
    torch.set_rng_state(rng)
    one_step(ours)  # the same next batch and the same optimizer state: the same weights after
    for (name, a), b in zip(ours.model.state_dict().items(), theirs.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_checkpointer_says_when_an_evaluation_saves_and_what_a_failed_run_keeps(tmp_path):
    cfg = slo.load(tiny_config(tmp_path, max_iters=8), overrides=["--always_save_checkpoint=False", "--stop_iter=4"])
    checkpointer = Checkpointer(parts(cfg), tmp_path / "out", "single", cfg=cfg, args=None, meta=None, say=print)
    p = Progress(iter_num=2)
    assert checkpointer.due(p, improved=True, start_iter=0, end_iter=4)
    assert not checkpointer.due(p, improved=False, start_iter=0, end_iter=4)
    assert not checkpointer.due(p, improved=True, start_iter=2, end_iter=4)  # no step taken since the start
    assert checkpointer.due(Progress(iter_num=4), improved=False, start_iter=0, end_iter=4)  # stop_iter < max_iters
    assert checkpointer.kept(p) == "No checkpoint was saved by this run."
    p.last_saved_iter = 2
    assert checkpointer.kept(p) == f"The last good checkpoint, {checkpointer.path} (iter 2), is kept."


def evaluator(cfg, iters: int = 3) -> Evaluator:
    splits = {"train": TOKENS[:4000], "val": TOKENS[4000:]}
    return Evaluator(splits, batch_size=cfg.data.batch_size, block_size=cfg.data.block_size, vocab_size=256,
                     seed=cfg.train.seed, iters=iters, device=CPU, dtype=torch.float32, group=SingleProcessGroup())


def test_an_evaluator_gives_each_split_s_mean_loss_over_its_own_batches(tmp_path):
    cfg = slo.load(tiny_config(tmp_path))
    model = parts(cfg).model
    losses = evaluator(cfg).run(model)
    assert model.training  # put back as it was found
    for index, split in enumerate(("train", "val")):
        tokens = TOKENS[:4000] if split == "train" else TOKENS[4000:]
        batches = Batches(tokens, cfg.data.batch_size, cfg.data.block_size, CPU,
                          seed=cfg.train.seed + EVAL_SEED_OFFSET + index)
        model.eval()
        with torch.no_grad():
            expected = sum(model(*batches.next())[1].item() for _ in range(3)) / 3
        model.train()
        assert losses[split] == pytest.approx(expected, rel=1e-6)
    assert evaluator(cfg).run(model) == losses  # the same batches at every evaluation
    assert evaluator(cfg).run(model, stopped=lambda: True) is None


def test_the_finite_check_stops_at_the_first_bad_step_with_what_is_kept():
    check = FiniteCheck(SingleProcessGroup(), lambda: "No checkpoint was saved by this run.")
    assert check.check(0) is None
    check.defer(0, torch.tensor([2.0, 1.0]))
    check.defer(1, torch.tensor([1.5, 0.5]))
    assert check.check(1) == 1.5
    check.defer(2, torch.tensor([float("nan"), 1.0]))
    check.defer(3, torch.tensor([1.0, 1.0]))
    with pytest.raises(RunError, match=r"^the loss is nan at iter 2; found at iter 3, .* No checkpoint was saved"):
        check.check(3)
    check.defer(4, torch.tensor([1.0, math.inf]))
    with pytest.raises(RunError, match=r"^the gradient norm is inf at iter 4; the run stopped before updating"):
        check.check(4)
    with pytest.raises(RunError, match=r"^the val loss is nan at the evaluation of iter 6; nothing was saved"):
        check.check_losses({"train": 1.0, "val": math.nan}, 6)


class Failing(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("Inductor could not lower this graph")


def test_the_compile_fallback_hands_back_the_plain_model_where_compilation_fails():
    plain, said, resets = torch.nn.Identity(), [], []
    fallback = CompileFallback(1, said.append)
    compiled = Forwards(Failing(), Failing(), compiled=True)
    result, forwards = fallback.run("train", compiled, lambda f: f.train(torch.ones(1)), plain, lambda: resets.append(1))
    assert forwards == Forwards.plain(plain) and torch.equal(result, torch.ones(1))
    assert resets == [1] and "Inductor could not lower" in said[0]
    working = Forwards(torch.nn.Identity(), torch.nn.Identity(), compiled=True)
    assert fallback.run("eval", working, lambda f: 7, plain, None) == (7, working)
    assert fallback.run("eval", compiled, lambda f: 8, plain, None) == (8, compiled)  # proven: not guarded again
    with pytest.raises(RunError, match="a data-parallel run cannot continue without it"):
        CompileFallback(2, said.append).run("train", compiled, lambda f: f.train(torch.ones(1)), plain, None)


def test_stop_signals_are_caught_while_entered_and_agreed(tmp_path):
    said = []
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(said.append) as signals:
        assert not signals.stopping() and not signals.agreed(SingleProcessGroup())
        os.kill(os.getpid(), signal.SIGTERM)
        while not signals.stopping():  # delivered to the main thread at its next instruction
            pass
        assert signals.signum == signal.SIGTERM and signals.agreed(SingleProcessGroup())
    assert said == ["SIGTERM: finishing the step, then saving a checkpoint (Ctrl-C again stops at once)"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_throughput_counts_the_steps_since_its_mark(tmp_path):
    cfg = slo.load(tiny_config(tmp_path))
    p = parts(cfg)
    meter = Throughput(1000, 6.0, CPU, torch.float32)
    for _ in range(4):
        one_step(p)
        meter.step()
    figures = meter.take(p.model, p.optimizer)
    assert list(figures) == ["tokens_per_s", "mfu", "memory_mb", "state_mb", "ms_per_iter"]
    assert figures["tokens_per_s"] > 0 and figures["state_mb"] > 0 and meter.iters == 0
