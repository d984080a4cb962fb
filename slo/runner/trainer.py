"""The trainer: the parts a config asks for, and the training loop that drives them.

``Trainer(cfg)`` builds the device, data, model, optimizer and schedule, and
starts from a checkpoint when ``init_from`` says so (slo.runner.checkpoint
holds that policy). ``train()`` is the loop, in one place: stop when asked,
evaluate (and save) when due, then one step: the learning rate for it, its
micro-batches, forward and backward on each, clip, check, update, log. The
trainer knows its rank and world size so data-parallel training can wrap it;
rank 0 (the master) logs and saves.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..dump import dumps
from ..errors import RunError
from .batches import Batches
from .saves import Progress, kept_checkpoint, save_due, save_trainer, trainer_state
from .corpus import ensure_builtin
from .dataset import META_JSON, open_dataset
from .evaluation import eval_losses
from .device import (autocast, compile_failure_message, configure_backends, is_allocation_failure, memory_mb,
                     peak_flops, pick_device, pick_dtype, will_compile)
from .files import CHECKPOINT_NAME, CONFIG_JSON, EXPLAIN_NAME, ORIGINS_JSON, SHARDED_NAME
from .pretrained import adopt_shape, load_weights, open_source, restore, weights_tokenizer
from .metrics import RunLog, console_print, format_eval_line, format_train_line
from .model import DEFAULT_VOCAB_SIZE, ModelArgs, build_model
from .optim import Schedule, held_mb, make_optimizer, optimizer_name, set_lr
from .parallel import check_world, collectives, compile_failure_in_group, loss_scaler, rank_device

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        source = open_source(cfg.train.init_from, Path(cfg.logging.out_dir).expanduser())
        if source is not None:
            cfg = adopt_shape(cfg, source)  # the weights decide the shape keys the config leaves alone
        self.cfg = cfg
        self.train_cfg, self.data_cfg, self.log_cfg = cfg.train, cfg.data, cfg.logging
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.master = rank == 0
        self.out_dir = Path(self.log_cfg.out_dir).expanduser()
        self.stream = stream
        self.log = RunLog(None)
        self.stop_signal: int | None = None
        self._compile_proven: set[str] = set()
        self._deferred: list[tuple[int, torch.Tensor]] = []  # (iter, loss and gradient norm) not yet checked
        self.timer = no_timer  # the benchmark swaps in a timer of the step's phases

        check_world(cfg, world_size)
        accumulation = self.data_cfg.gradient_accumulation_steps
        self.micro_steps = accumulation // world_size
        self.tokens_per_iter = accumulation * self.data_cfg.batch_size * self.data_cfg.block_size
        stop = self.train_cfg.stop_iter
        self.end_iter = self.train_cfg.max_iters if stop is None else min(stop, self.train_cfg.max_iters)

        self.device = rank_device(pick_device(cfg.system.device), local_rank, world_size)
        configure_backends(self.device)
        self.dtype = pick_dtype(cfg.system.dtype, self.device)
        self.group = collectives(world_size, self.device, cfg.ddp, self.dtype)
        seed = self.train_cfg.seed + rank
        torch.manual_seed(seed)
        random.seed(seed)

        ensure_builtin(self.data_cfg.data_dir, self.data_cfg.dataset)
        self.dataset = open_dataset(self.data_cfg.data_dir, self.data_cfg.dataset,
                                    block_size=self.data_cfg.block_size, vocab_size=cfg.model.vocab_size)
        vocab_size = cfg.model.vocab_size or self.dataset.vocab_size or DEFAULT_VOCAB_SIZE
        self.args = ModelArgs.from_config(cfg, vocab_size)
        self.raw_model = build_model(self.args, self.device, batch_size=self.data_cfg.batch_size)
        load_weights(self, source)  # whole, before they are sharded
        self.compiled = will_compile(cfg.system.compile, self.device, say=self.say)
        # strategy=fsdp: each block compiled, then sharded (PyTorch's order); the model is used unwrapped
        self.group.shard(self.raw_model, compile_blocks=self.compiled)
        float16 = self.dtype == torch.float16
        # the fused AdamW kernel does not take the sharded loss scaler's overflow flag
        self.optimizer, self.optimizer_kind = make_optimizer(self.raw_model, self.train_cfg, self.device,
                                                             fused=not (float16 and self.group.shards))
        self.scaler = loss_scaler(self.device, float16, self.group.shards)
        self.schedule = Schedule.from_config(self.train_cfg, cfg.lr_schedule)
        self.batches = Batches(self.dataset.train, self.data_cfg.batch_size, self.data_cfg.block_size,
                               self.device, seed=self.train_cfg.seed, rank=rank, vocab_size=vocab_size,
                               name=f"{self.dataset.path}'s train split")
        self.progress = Progress()
        self._peak_flops: float | None = None
        self.checkpoint_path = self.out_dir / {"sharded": SHARDED_NAME}.get(self.log_cfg.checkpoint_format, CHECKPOINT_NAME)
        self.resumed = restore(self, source)
        self.weights_meta = weights_tokenizer(source, self.dataset.meta, self.say)
        del source  # its weights are the model's now
        self._say_idle_keys()
        compile_whole = self.compiled and not self.group.shards
        self.model = torch.compile(self.raw_model) if compile_whole else self.raw_model
        self.train_model = self.group.wrap(self.model)  # compiled, then wrapped in DDP (nanoGPT's order)

    def _say_idle_keys(self) -> None:
        """A line for each DDP key this run cannot act on."""
        ddp, accumulation = self.cfg.ddp, self.data_cfg.gradient_accumulation_steps
        if self.world_size == 1 and (ddp.nproc_per_node or 1) > 1:
            self.say(f"note: nproc_per_node={ddp.nproc_per_node} is not used by this trainer: one process "
                     f"runs all {accumulation} micro-steps of each step (slo train starts the processes)")
        if ddp.strategy == "fsdp" and self.world_size == 1:
            self.say("warning: strategy=fsdp with one process shards nothing: the model, its gradients and "
                     "optimizer state stay whole in this process; start two or more (nproc_per_node, torchrun)")
        if ddp.fsdp_cpu_offload and self.device.type == "cpu":
            self.say("note: fsdp_cpu_offload=True: this run is on the CPU already, so nothing is offloaded")

    # ------------------------------------------------------------ console

    def say(self, text: str) -> None:
        if not self.master:
            return
        if self.log.enabled:
            self.log.say(text)
        else:
            console_print(text, self.stream)

    def describe(self) -> str:
        a, d = self.args, self.data_cfg
        compiled = "compiled" if self.compiled else "not compiled"
        sharded = f", fsdp over {self.world_size} rank{'s' if self.world_size > 1 else ''}" if self.group.shards else ""
        return "\n".join((
            f"model: {self.raw_model.num_params() / 1e6:.2f}M parameters ({a.n_layer} layers, {a.n_head} heads, "
            f"{a.n_embd} wide, vocab {a.vocab_size}, block {a.block_size})",
            f"run: {self.device}, {str(self.dtype).removeprefix('torch.')}, {compiled}{sharded}, "
            f"{optimizer_name(self.train_cfg, self.optimizer_kind)} | "
            f"{self.tokens_per_iter:,} tokens per step (batch {d.batch_size} x block {d.block_size} x "
            f"accumulation {d.gradient_accumulation_steps})",
            f"data: {self.dataset.path}: {len(self.dataset.train):,} train tokens, {len(self.dataset.val):,} val tokens",
        ))

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """What a checkpoint of this run holds now."""
        return trainer_state(self)

    def save(self) -> None:
        save_trainer(self)

    def write_run_files(self) -> None:
        """The resolved config (flat JSON, its origins as JSON, explained for people) and the dataset's meta."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / CONFIG_JSON).write_text(dumps(self.cfg, "json"), encoding="utf-8")
            (self.out_dir / ORIGINS_JSON).write_text(json.dumps(self.cfg.origins(), indent=1) + "\n", encoding="utf-8")
            (self.out_dir / EXPLAIN_NAME).write_text(self.cfg.explain() + "\n", encoding="utf-8")
            source = self.dataset.path / META_JSON
            target = self.out_dir / META_JSON
            if source.is_file():
                if not (target.exists() and target.samefile(source)):  # out_dir may be the dataset's folder
                    shutil.copyfile(source, target)
            elif self.dataset.meta:  # nanoGPT meta.pkl or an llm.c header: slo's form, as JSON
                target.write_text(json.dumps(self.dataset.meta) + "\n", encoding="utf-8")
        except OSError as e:
            raise RunError(f"cannot write to out_dir {self.out_dir}: {e}; choose a writable out_dir") from None

    # ------------------------------------------------------------ the steps

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches.next()

    def step_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The micro-batches of one step, fetched before its forward and backward passes."""
        with self.timer("data"):
            return [self.next_batch() for _ in range(self.micro_steps)]

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One micro-step: loss of (x, y), gradients of loss / micro_steps added to .grad.
        Returns the unscaled loss, detached."""
        with autocast(self.device, self.dtype):
            _, loss = self.train_model(x, y)
        self.scaler.scale(loss / self.micro_steps).backward()
        return loss.detach()

    def clip_gradients(self) -> torch.Tensor | None:
        """Unscale (float16) and clip the gradients; their norm before clipping, or None when grad_clip=0."""
        self.scaler.unscale_(self.optimizer)
        if self.train_cfg.grad_clip <= 0:
            return None
        norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.train_cfg.grad_clip)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # a DTensor under strategy=fsdp

    def optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self, lr: float, batches: list, check: bool = True) -> float | None:
        """One optimizer step at lr over batches: accumulate, clip, check, step. Returns the mean loss.

        A non-finite loss (or gradient norm, without a loss scaler) raises RunError before the
        weights change. check=False defers this step's check, so the step reads nothing back from
        the device (returning None): the next checked step checks the deferred ones with its own,
        in one read, and check_deferred() runs before anything is saved, so nothing non-finite is
        ever saved.
        """
        set_lr(self.optimizer, lr)
        losses = self._guarded("train", lambda: self._accumulate(batches))
        with self.timer("optimizer"):
            norm = self.clip_gradients()
            checked = torch.stack(losses).mean().float()
            if norm is not None and not self.scaler.is_enabled():
                checked = torch.stack((checked, norm.float()))
            self._deferred.append((self.progress.iter_num, checked))
            loss = self.check_deferred() if check else None
            self.optimizer_step()
        return loss

    def check_deferred(self) -> float | None:
        """Check every step not yet checked, in one read of the device: RunError naming the first whose
        loss or gradient norm is not finite (the mean over ranks: a non-finite value on any rank makes it
        non-finite on all, so all stop). The last one's loss; None when none was waiting."""
        if not self._deferred:
            return None
        iters = [it for it, _ in self._deferred]
        values = self.group.mean(torch.stack([c for _, c in self._deferred])).reshape(len(iters), -1).tolist()
        self._deferred.clear()
        for it, row in zip(iters, values):
            if not all(math.isfinite(v) for v in row):
                what = f"the loss is {row[0]}" if not math.isfinite(row[0]) else f"the gradient norm is {row[1]}"
                when = ("the run stopped before updating the weights" if it == self.progress.iter_num else
                        f"found at iter {self.progress.iter_num}, the run stopped and saved nothing after it")
                raise RunError(f"{what} at iter {it}; {when}. {kept_checkpoint(self)} Try a lower learning_rate, "
                               "a longer warmup_iters, grad_clip=1.0, or dtype=bfloat16/float32 instead of float16")
        return values[-1][0]

    def _accumulate(self, batches: list) -> list[torch.Tensor]:
        losses = []
        for micro, (x, y) in enumerate(batches):
            # DDP averages gradients across ranks in the backward of the last micro-step only
            self.group.sync_gradients(self.train_model, micro == len(batches) - 1)
            with self.timer("forward_backward"):
                losses.append(self.forward_backward(x, y))
        return losses

    def _guarded(self, mode: str, step):
        """step(), and when it is the first compiled call in this mode and compilation fails,
        a message and step() again without torch.compile, on the same batches and random state."""
        if not self.compiled or mode in self._compile_proven:
            return step()
        rng_state = torch.get_rng_state()
        try:
            result = step()
        except (RunError, KeyboardInterrupt):
            raise
        except Exception as e:  # Dynamo and Inductor raise many types; all mean "cannot compile here"
            if self.world_size > 1:  # the ranks cannot all swap models at once
                raise compile_failure_in_group(e) from e
            self.say(compile_failure_message(e))
            self.model = self.train_model = self.raw_model
            self.compiled = False
            self.optimizer.zero_grad(set_to_none=True)
            torch.set_rng_state(rng_state)
            return step()
        self._compile_proven.add(mode)
        return result

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Mean loss over eval_iters batches of each split; the same batches at every evaluation.
        None when a stop signal arrives meanwhile. Rank 0 evaluates (with the model outside DDP,
        whose forward the other ranks would have to join) and the others receive its numbers.
        Where every rank holds a shard of the model, the ranks share the batches instead."""
        losses = None
        if self.master or self.group.shards:
            self.model.eval()
            try:
                losses = self._guarded("eval", self._evaluate_splits)
            finally:
                self.model.train()
        return losses if self.group.shards else self.group.from_master(losses)

    def _evaluate_splits(self) -> dict[str, float] | None:
        return eval_losses(self)

    # ------------------------------------------------------------ the loop

    def train(self) -> TrainResult:
        """Run to max_iters, or stop_iter (or evaluate once with eval_only); a stop signal saves and returns early."""
        if self.train_cfg.eval_only:
            return self._evaluate_once()
        self._open_run()
        p, log_cfg, end = self.progress, self.log_cfg, self.end_iter
        start_iter, loss = p.iter_num, None
        clock = time.perf_counter() - p.elapsed  # p.elapsed = now - clock
        interval_start, interval_iters = time.perf_counter(), 0
        previous = self._catch_stop_signals()
        try:
            while True:
                p.elapsed = time.perf_counter() - clock
                if self._stop_requested():
                    return self._stop(start_iter, loss)
                if self._eval_due():
                    losses = self.evaluate()
                    if losses is None:
                        continue  # a stop signal arrived during it: the check above saves
                    self._after_eval(losses, start_iter, clock)
                    interval_start, interval_iters = time.perf_counter(), 0
                if p.iter_num >= end:
                    return TrainResult(p.iter_num, p.best_val_loss, loss)
                if self._stop_requested():  # arrived after the evaluation: save before another step
                    continue
                lr, step = self.schedule(p.iter_num), p.iter_num
                logged = step % log_cfg.log_interval == 0 or step + 1 == end
                # checked (a read of the device) where the loss is logged and before every evaluation
                loss = self.train_step(lr, self.step_batches(), check=logged or self._eval_due(step + 1))
                p.iter_num += 1
                interval_iters += 1
                self.log.advance(loss)
                if logged:
                    self._log_step(p.iter_num - 1, loss, lr, time.perf_counter() - interval_start, interval_iters,
                                   time.perf_counter() - clock)
                    interval_start, interval_iters = time.perf_counter(), 0
        except (MemoryError, RuntimeError) as e:
            if not is_allocation_failure(e):
                raise
            raise RunError(f"out of memory on {self.device} at batch_size={self.data_cfg.batch_size}, "
                           f"block_size={self.data_cfg.block_size}: lower batch_size (and raise "
                           "gradient_accumulation_steps to keep the tokens per step)") from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.log.close()

    def _eval_due(self, iter_num: int | None = None) -> bool:
        """At every eval_interval-th iteration and the last one, once each (now, or at iter_num)."""
        p = self.progress
        it = p.iter_num if iter_num is None else iter_num
        due = it % self.log_cfg.eval_interval == 0 or it == self.end_iter
        return due and p.last_eval_iter != it

    def _evaluate_once(self) -> TrainResult:
        losses = self.evaluate()
        if losses is not None:
            self.say(format_eval_line({"iter": self.progress.iter_num, "train_loss": losses["train"],
                                       "val_loss": losses["val"]}))
        return TrainResult(self.progress.iter_num, losses["val"] if losses else math.inf, None)

    def _open_run(self) -> None:
        """Rank 0 writes the run's files, opens its log and describes the run."""
        if not self.master:
            return
        self.write_run_files()
        self.log = RunLog(self.out_dir, self.log_cfg, flat_config=self.cfg.to_dict(), stream=self.stream,
                          resume_iter=self.progress.iter_num if self.resumed else None)
        self.say(self.describe())
        self.log.open_bar(self.end_iter, self.progress.iter_num)

    def _stop(self, start_iter: int, loss: float | None) -> TrainResult:
        """A stop signal reached a rank: save what this run did, say so, and return."""
        p = self.progress
        name = signal.Signals(self.stop_signal).name
        if p.iter_num > start_iter:
            checked = self.check_deferred()  # the steps since the last check, before they are saved
            loss = loss if checked is None else checked
            if p.last_saved_iter != p.iter_num:
                self.save()
            self.say(f"{name}: saved {self.checkpoint_path} at iter {p.iter_num}; init_from=resume continues the run")
        else:
            self.say(f"{name}: stopped at iter {p.iter_num} before any step; nothing to save")
        return TrainResult(p.iter_num, p.best_val_loss, loss, self.stop_signal)

    def _stop_requested(self) -> bool:
        """Whether a stop signal reached this process or, in a data-parallel run, any rank. A collective:
        every rank asks at the same points of the loop, so all stop after the same step."""
        agreed = self.group.agreed_signal(self.stop_signal)
        if agreed is not None and self.stop_signal is None:  # never store None: a signal may arrive meanwhile
            self.stop_signal = agreed
        return agreed is not None

    def _after_eval(self, losses: dict[str, float], start_iter: int, clock: float) -> None:
        p = self.progress
        p.last_eval_iter = p.iter_num
        improved = losses["val"] < p.best_val_loss
        p.best_val_loss = min(p.best_val_loss, losses["val"])
        rec = {"iter": p.iter_num, "tokens": p.iter_num * self.tokens_per_iter, "train_loss": losses["train"],
               "val_loss": losses["val"], "lr": self.schedule(p.iter_num), "time": time.perf_counter() - clock}
        self.log.record(rec)
        line = format_eval_line(rec)
        if save_due(self, improved, start_iter):
            p.elapsed = time.perf_counter() - clock
            self.save()
            line += f" | saved {self.checkpoint_path}"
        self.say(line)

    def _log_step(self, step: int, loss: float, lr: float, seconds: float, iters: int, elapsed: float) -> None:
        if not self.master:
            return
        tokens_per_s = self.tokens_per_iter * iters / seconds if seconds > 0 else None
        mfu = None
        if tokens_per_s is not None:
            if self._peak_flops is None:
                self._peak_flops = peak_flops(self.device, self.dtype)
            mfu = self.raw_model.flops_per_token() * tokens_per_s / (self._peak_flops * self.world_size)
        rec = {"iter": step, "tokens": (step + 1) * self.tokens_per_iter, "loss": loss, "lr": lr,
               "tokens_per_s": tokens_per_s, "mfu": mfu, "memory_mb": memory_mb(self.device), "state_mb": held_mb(self.raw_model, self.optimizer),
               "ms_per_iter": 1000 * seconds / iters, "time": elapsed}
        self.log.record(rec)
        self.say(format_train_line(rec))

    def _catch_stop_signals(self) -> dict:
        """SIGINT and SIGTERM set stop_signal: the loop finishes its step, saves and returns.
        A second SIGINT interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if signum == signal.SIGINT and self.stop_signal is not None:
                raise KeyboardInterrupt
            self.stop_signal = signum
            self.say(f"{signal.Signals(signum).name}: finishing the step, then saving a checkpoint "
                     "(Ctrl-C again stops at once)")

        return {s: signal.signal(s, handler) for s in STOP_SIGNALS}


def no_timer(phase: str):
    return contextlib.nullcontext()
