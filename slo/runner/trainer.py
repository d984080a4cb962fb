"""The trainer: the parts a config asks for, built in their order, and the training loop that drives them.

``Trainer(cfg)`` builds the device, data, model, optimizer and schedule, and
the collaborators the loop calls: a ``Checkpointer`` (slo.runner.checkpoint),
an ``Evaluator`` (slo.runner.evaluator), the guards (slo.runner.guards: stop
signals, the finite-loss check, the compile fallback) and a ``Throughput``
meter. ``train()`` is the loop, in one place: stop when asked, evaluate (and
save) when due, then one step: the learning rate for it, its micro-batches,
forward and backward on each, clip, check, update, log. The trainer knows its
rank and world size so data-parallel training can wrap it; rank 0 (the
master) logs and saves.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..evals.tasks import TaskEvaluator
from ..outdir.files import write_run_files
from .checkpoint.checkpointer import Checkpointer
from .checkpoint.contents import Progress, RunParts
from .data.batches import Batches
from .data.corpus import ensure_builtin
from .data.datasets import META_JSON, open_dataset
from .device import autocast, configure_backends, pick_device, pick_dtype, raise_if_out_of_memory, will_compile
from .distributed.collectives import loss_scaler
from .distributed.placement import check_world, group_for, idle_key_notes, rank_device
from .evaluator import Evaluator
from .first_weights import adopt_shape, load_weights, open_source, weights_tokenizer
from .guards import CompileFallback, FiniteCheck, Forwards, StopSignals
from .metrics.runlog import RunLog, describe_run, format_eval_line, format_train_line
from .metrics.throughput import Throughput
from .model.gpt import DEFAULT_VOCAB_SIZE, ModelArgs, build_model
from .model.optimizers import Schedule, make_optimizer, optimizer_name, set_lr


@dataclass(frozen=True)
class TrainResult:
    iter_num: int
    best_val_loss: float
    last_loss: float | None
    stopped_by: int | None = None  # the signal that stopped the run early

    @property
    def exit_status(self) -> int:
        """0, or 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells report it."""
        return 0 if self.stopped_by is None else 128 + int(self.stopped_by)


class Trainer:
    def __init__(self, cfg, *, rank: int = 0, world_size: int = 1, local_rank: int = 0, stream=None):
        out_dir = Path(cfg.logging.out_dir).expanduser()
        # 1. The first weights, opened before anything is built: they decide the shape keys the config leaves alone.
        source = open_source(cfg.train.init_from, out_dir)
        cfg = cfg if source is None else adopt_shape(cfg, source)
        self.cfg, self.train_cfg, self.data_cfg, self.log_cfg = cfg, cfg.train, cfg.data, cfg.logging
        self.rank, self.world_size, self.master = rank, world_size, rank == 0
        self.out_dir, self.stream, self.log, self.timer = out_dir, stream, RunLog(None, stream=stream), no_timer
        check_world(cfg, world_size)
        d = self.data_cfg
        self.micro_steps = d.gradient_accumulation_steps // world_size
        self.tokens_per_iter = d.gradient_accumulation_steps * d.batch_size * d.block_size
        stop = self.train_cfg.stop_iter
        self.end_iter = self.train_cfg.max_iters if stop is None else min(stop, self.train_cfg.max_iters)
        # 2. The device and the collectives, which every later part is placed on; the seed before any draws.
        self.device = rank_device(pick_device(cfg.system.device), local_rank, world_size)
        configure_backends(self.device)
        self.dtype = pick_dtype(cfg.system.dtype, self.device)
        self.group = group_for(world_size, self.device, cfg.ddp, self.dtype)
        torch.manual_seed(self.train_cfg.seed + rank)
        random.seed(self.train_cfg.seed + rank)
        # 3. The data, whose vocabulary sizes the model where the config does not.
        ensure_builtin(d.data_dir, d.dataset)
        self.dataset = open_dataset(d.data_dir, d.dataset, block_size=d.block_size, vocab_size=cfg.model.vocab_size)
        vocab_size = cfg.model.vocab_size or self.dataset.vocab_size or DEFAULT_VOCAB_SIZE
        # 4. The model, with its first weights loaded whole: before they are sharded.
        self.args = ModelArgs.from_config(cfg, vocab_size)
        self.model = build_model(self.args, self.device, batch_size=d.batch_size)
        load_weights(self.model, source, self.args.block_size)
        # 5. strategy=fsdp: each block compiled, then sharded (PyTorch's order), before an optimizer holds them.
        compiled = will_compile(cfg.system.compile, self.device, say=self.say)
        self.group.shard(self.model, compile_blocks=compiled)
        # 6. The optimizer over the parameters as they will train (the fused AdamW kernel does not take the
        # sharded loss scaler's overflow flag), the schedule and the batch stream.
        float16 = self.dtype == torch.float16
        self.optimizer, self.optimizer_kind = make_optimizer(self.model, self.train_cfg, self.device,
                                                             fused=not (float16 and self.group.shards))
        self.scaler = loss_scaler(self.device, float16, self.group.shards)
        self.schedule = Schedule.from_config(self.train_cfg, cfg.lr_schedule)
        self.batches = Batches(self.dataset.train, d.batch_size, d.block_size, self.device, seed=self.train_cfg.seed,
                               rank=rank, vocab_size=vocab_size, name=f"{self.dataset.path}'s train split")
        # 7. Resume, once every part it loads into exists (and a sharded checkpoint's shards have their home).
        parts = RunParts(self.model, self.optimizer, self.scaler, self.batches, self.group, rank, world_size)
        weights_meta = weights_tokenizer(source, self.dataset.meta, self.say)  # with a note where they differ
        self.checkpointer = Checkpointer(parts, out_dir, self.log_cfg.checkpoint_format, cfg=cfg, args=self.args,
                                         meta=self.dataset.meta or weights_meta, say=self.say)
        restored = self.checkpointer.restore(source)
        self.progress, self.resumed = restored or Progress(), restored is not None
        del source  # its weights are the model's now
        for note in idle_key_notes(cfg, world_size, self.device):
            self.say(note)
        # 8. Compiled whole, then wrapped in DDP (nanoGPT's order): last, around the model as it now is.
        self.forwards = Forwards.of(self.model, compiled, self.group)
        self._loop_parts(vocab_size)

    def _loop_parts(self, vocab_size: int) -> None:
        """The loop's collaborators, which only read what the steps above built."""
        d = self.data_cfg
        self.evaluator = Evaluator({"train": self.dataset.train, "val": self.dataset.val}, batch_size=d.batch_size,
                                   block_size=d.block_size, vocab_size=vocab_size, seed=self.train_cfg.seed,
                                   iters=self.log_cfg.eval_iters, device=self.device, dtype=self.dtype,
                                   group=self.group, rank=self.rank, where=str(self.dataset.path))
        self.signals, self.fallback = StopSignals(self.say), CompileFallback(self.world_size, self.say)
        self.finite = FiniteCheck(self.group, lambda: self.checkpointer.kept(self.progress))
        self.throughput = Throughput(self.tokens_per_iter, self.model.flops_per_token(), self.device, self.dtype, self.world_size)
        self.tasks = TaskEvaluator.for_run(self.cfg, self.checkpointer.meta, vocab_size, self.device, self.dtype,
                                           self.say, self.end_iter) if self.master else None  # a bad name fails now

    def say(self, text: str) -> None:
        if self.master:
            self.log.say(text)

    def describe(self) -> str:
        return describe_run(self.model, self.dataset, device=self.device, dtype=self.dtype, compiled=self.forwards.compiled,
                            fsdp_ranks=self.world_size if self.group.shards else None, data_cfg=self.data_cfg,
                            optimizer=optimizer_name(self.train_cfg, self.optimizer_kind), tokens_per_iter=self.tokens_per_iter)

    def state_dict(self) -> dict:
        """What a checkpoint of this run holds now."""
        return self.checkpointer.state(self.progress)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches.next()

    def step_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The micro-batches of one step, fetched before its forward and backward passes."""
        with self.timer("data"):
            return [self.next_batch() for _ in range(self.micro_steps)]

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, forward=None) -> torch.Tensor:
        """One micro-step: loss of (x, y) (detached, unscaled), gradients of loss / micro_steps added to .grad."""
        with autocast(self.device, self.dtype):
            _, loss = (forward or self.forwards.train)(x, y)
        self.scaler.scale(loss / self.micro_steps).backward()
        return loss.detach()

    def clip_gradients(self) -> torch.Tensor | None:
        """Unscale (float16) and clip the gradients; their norm before clipping, or None when grad_clip=0."""
        self.scaler.unscale_(self.optimizer)
        if self.train_cfg.grad_clip <= 0:
            return None
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg.grad_clip)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # a DTensor under strategy=fsdp

    def optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self, lr: float, batches: list, check: bool = True) -> float | None:
        """One optimizer step at lr over batches: accumulate, clip, check, step; the mean loss. A non-finite
        loss (or gradient norm) raises RunError before the weights change; check=False defers the check
        (slo.runner.guards.FiniteCheck), so the step reads nothing back from the device and returns None."""
        set_lr(self.optimizer, lr)
        losses = self._compiled("train", lambda forwards: self._accumulate(batches, forwards.train))
        with self.timer("optimizer"):
            norm = self.clip_gradients()
            checked = torch.stack(losses).mean().float()
            if norm is not None and not self.scaler.is_enabled():
                checked = torch.stack((checked, norm.float()))
            self.finite.defer(self.progress.iter_num, checked)
            loss = self.finite.check(self.progress.iter_num) if check else None
            self.optimizer_step()
        return loss

    def _accumulate(self, batches: list, forward=None) -> list[torch.Tensor]:
        losses = []
        for micro, (x, y) in enumerate(batches):
            # DDP averages gradients across ranks in the backward of the last micro-step only
            self.group.sync_gradients(forward or self.forwards.train, micro == len(batches) - 1)
            with self.timer("forward_backward"):
                losses.append(self.forward_backward(x, y, forward))
        return losses

    def _compiled(self, mode: str, call):
        """call(self.forwards), through the compile fallback, which may hand back the plain model to use."""
        result, self.forwards = self.fallback.run(mode, self.forwards, call, self.model,
                                                  lambda: self.optimizer.zero_grad(set_to_none=True))
        return result

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Each split's mean loss (slo.runner.evaluator); None when a stop signal arrives meanwhile. Rank 0
        evaluates, outside DDP, and the others receive its numbers (under FSDP the ranks share the batches)."""
        losses = None
        if self.master or self.group.shards:
            losses = self._compiled("eval", lambda f: self.evaluator.run(f.eval, self.signals.stopping))
            if losses is not None:
                self.finite.check_losses(losses, self.progress.iter_num)
        return losses if self.group.shards else self.group.from_master(losses)

    def train(self) -> TrainResult:
        """Run to max_iters, or stop_iter (or evaluate once with eval_only); a stop signal saves and returns early."""
        if self.train_cfg.eval_only:
            return self._evaluate_once()
        self._open_run()
        p, loss = self.progress, None
        start_iter, clock = p.iter_num, time.perf_counter() - p.elapsed  # p.elapsed = now - clock
        self.throughput.mark()
        try:
            with self.signals:
                while True:
                    p.elapsed = time.perf_counter() - clock
                    if self.signals.agreed(self.group):
                        return self._stop(start_iter, loss)
                    if self._eval_due():
                        losses = self.evaluate()
                        if losses is None:
                            continue  # a stop signal arrived during it: the check above saves
                        self._after_eval(losses, start_iter, clock)
                    if p.iter_num >= self.end_iter:
                        return TrainResult(p.iter_num, p.best_val_loss, loss)
                    if not self.signals.agreed(self.group):  # else it arrived after the evaluation: save first
                        loss = self._step(time.perf_counter() - clock)
        except (MemoryError, RuntimeError) as e:
            raise_if_out_of_memory(e, self.device, self.data_cfg)
            raise
        finally:
            self.log.close()

    def _step(self, elapsed: float) -> float | None:
        """The next step, logged at every log_interval-th and the last; its loss where it was checked."""
        p, step = self.progress, self.progress.iter_num
        lr = self.schedule(step)
        logged = step % self.log_cfg.log_interval == 0 or step + 1 == self.end_iter
        # checked (a read of the device) where the loss is logged and before every evaluation
        loss = self.train_step(lr, self.step_batches(), check=logged or self._eval_due(step + 1))
        p.iter_num += 1
        self.throughput.step()
        self.log.advance(loss)
        if logged and self.master:
            rec = {"iter": step, "tokens": (step + 1) * self.tokens_per_iter, "loss": loss, "lr": lr,
                   **self.throughput.take(self.model, self.optimizer), "time": elapsed}
            self.log.record(rec)
            self.say(format_train_line(rec))
        elif logged:
            self.throughput.mark()
        return loss

    def _eval_due(self, iter_num: int | None = None) -> bool:
        """At every eval_interval-th iteration and the last one, once each (now, or at iter_num)."""
        it = self.progress.iter_num if iter_num is None else iter_num
        due = it % self.log_cfg.eval_interval == 0 or it == self.end_iter
        return due and self.progress.last_eval_iter != it

    def _evaluate_once(self) -> TrainResult:
        losses = self.evaluate()
        if losses is not None:
            self.say(format_eval_line({"iter": self.progress.iter_num, "train_loss": losses["train"], "val_loss": losses["val"]}))
        return TrainResult(self.progress.iter_num, losses["val"] if losses else math.inf, None)

    def _open_run(self) -> None:
        """Rank 0 writes the run's files, opens its log and describes the run."""
        if not self.master:
            return
        write_run_files(self.out_dir, self.cfg, self.dataset.path / META_JSON, self.dataset.meta)
        self.log = RunLog(self.out_dir, self.log_cfg, flat_config=self.cfg.to_dict(), stream=self.stream,
                          resume_iter=self.progress.iter_num if self.resumed else None)
        self.say(self.describe())
        self.log.open_bar(self.end_iter, self.progress.iter_num)

    def _stop(self, start_iter: int, loss: float | None) -> TrainResult:
        """A stop signal reached a rank: save what this run did, say so, and return."""
        p, path, name = self.progress, self.checkpointer.path, signal.Signals(self.signals.signum).name
        if p.iter_num > start_iter:
            checked = self.finite.check(p.iter_num)  # the steps since the last check, before they are saved
            loss = loss if checked is None else checked
            if p.last_saved_iter != p.iter_num:
                self.checkpointer.save(p)
            self.say(f"{name}: saved {path} at iter {p.iter_num}; init_from=resume continues the run")
        else:
            self.say(f"{name}: stopped at iter {p.iter_num} before any step; nothing to save")
        return TrainResult(p.iter_num, p.best_val_loss, loss, self.signals.signum)

    def _after_eval(self, losses: dict[str, float], start_iter: int, clock: float) -> None:
        p = self.progress
        p.last_eval_iter = p.iter_num
        improved, p.best_val_loss = losses["val"] < p.best_val_loss, min(p.best_val_loss, losses["val"])
        rec = {"iter": p.iter_num, "tokens": p.iter_num * self.tokens_per_iter, "train_loss": losses["train"],
               "val_loss": losses["val"], "lr": self.schedule(p.iter_num), "time": time.perf_counter() - clock}
        self.log.record({**rec, **(self.tasks.scores_at(p.iter_num, self.model) if self.tasks else {})})
        line = format_eval_line(rec)
        if self.checkpointer.due(p, improved, start_iter, self.end_iter):
            p.elapsed = time.perf_counter() - clock
            self.checkpointer.save(p)
            line += f" | saved {self.checkpointer.path}"
        self.say(line)
        self.throughput.mark()


def no_timer(phase: str):
    return contextlib.nullcontext()
