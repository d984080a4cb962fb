"""The training loop, in named steps.

``Trainer(cfg)`` builds the parts a resolved config asks for (device, data,
model, optimizer, schedule) and restores a checkpoint when ``init_from`` says
so; ``train()`` runs the loop. One step is ``next_batch`` and
``forward_backward`` per micro-step, then ``optimizer_step``; ``evaluate``
measures train and val loss on fixed batches; ``state_dict`` is what a
checkpoint holds. The trainer knows its rank and world size so data-parallel
training can wrap it; rank 0 (the master) logs and saves.
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

import numpy as np
import torch

from .. import dumps
from ..errors import RunError, first_line
from ..schema import SCHEMA_VERSION
from .files import CHECKPOINT_NAME, CONFIG_JSON, EXPLAIN_NAME, ORIGINS_JSON
from .checkpoint import check_compatible, clean_state_dict, load_checkpoint, save_checkpoint
from .batches import Batches
from .corpus import ensure_builtin
from .dataset import META_JSON, open_dataset
from .device import (autocast, compile_failure_message, configure_backends, maybe_compile, memory_mb,
                     peak_flops, pick_device, pick_dtype)
from .parallel import check_world, collectives, compile_failure_in_group, rank_device
from .metrics import RunLog, console_print, format_eval_line, format_train_line
from .model import GPT, ModelArgs
from .optim import Schedule, make_optimizer, set_lr

DEFAULT_VOCAB_SIZE = 50304  # nanoGPT's GPT-2 vocabulary padded to a multiple of 64
EVAL_SEED_OFFSET = 1_000_003  # evaluation batches get their own stream, the same at every evaluation
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    iter_num: int = 0
    best_val_loss: float = math.inf
    last_eval_iter: int = -1
    elapsed: float = 0.0  # seconds of training, over every resume
    last_saved_iter: int | None = None


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
        self.cfg = cfg
        self.train_cfg, self.data_cfg, self.log_cfg = cfg.train, cfg.data, cfg.logging
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.master = rank == 0
        self.out_dir = Path(self.log_cfg.out_dir).expanduser()
        self.stream = stream
        self.log = RunLog(None)
        self.stop_signal: int | None = None
        self._compile_proven: set[str] = set()
        self.timer = no_timer  # the benchmark swaps in a timer of the step's phases

        check_world(cfg, world_size)
        accumulation = self.data_cfg.gradient_accumulation_steps
        self.micro_steps = accumulation // world_size
        self.tokens_per_iter = accumulation * self.data_cfg.batch_size * self.data_cfg.block_size

        self.device = rank_device(pick_device(cfg.system.device), local_rank, world_size)
        configure_backends(self.device)
        self.group = collectives(world_size, self.device, cfg.ddp)
        self.dtype = pick_dtype(cfg.system.dtype, self.device)
        seed = self.train_cfg.seed + rank
        torch.manual_seed(seed)
        random.seed(seed)

        ensure_builtin(self.data_cfg.data_dir, self.data_cfg.dataset)
        self.dataset = open_dataset(self.data_cfg.data_dir, self.data_cfg.dataset,
                                    block_size=self.data_cfg.block_size, vocab_size=cfg.model.vocab_size)
        vocab_size = cfg.model.vocab_size or self.dataset.vocab_size or DEFAULT_VOCAB_SIZE
        self.args = ModelArgs.from_config(cfg, vocab_size)
        self.raw_model = GPT(self.args).to(self.device)
        self.optimizer, self.optimizer_kind = make_optimizer(self.raw_model, self.train_cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.schedule = Schedule.from_config(self.train_cfg, cfg.lr_schedule)
        self.batches = Batches(self.dataset.train, self.data_cfg.batch_size, self.data_cfg.block_size,
                               self.device, seed=self.train_cfg.seed, rank=rank, vocab_size=vocab_size,
                               name=f"{self.dataset.path}'s train split")
        self.progress = Progress()
        self.resumed = False
        self._peak_flops: float | None = None
        self._restore(self.train_cfg.init_from)
        if world_size == 1 and (cfg.ddp.nproc_per_node or 1) > 1:
            self.say(f"note: nproc_per_node={cfg.ddp.nproc_per_node} is not used by this trainer: one process "
                     f"runs all {accumulation} micro-steps of each step (slo train starts the processes)")
        self.model = maybe_compile(self.raw_model, cfg.system.compile, self.device, say=self.say)
        self.train_model = self.group.wrap(self.model)  # compiled, then wrapped in DDP (nanoGPT's order)

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
        compiled = "compiled" if self.model is not self.raw_model else "not compiled"
        return "\n".join((
            f"model: {self.raw_model.num_params() / 1e6:.2f}M parameters ({a.n_layer} layers, {a.n_head} heads, "
            f"{a.n_embd} wide, vocab {a.vocab_size}, block {a.block_size})",
            f"run: {self.device}, {str(self.dtype).removeprefix('torch.')}, {compiled}, AdamW {self.optimizer_kind} | "
            f"{self.tokens_per_iter:,} tokens per step (batch {d.batch_size} x block {d.block_size} x "
            f"accumulation {d.gradient_accumulation_steps})",
            f"data: {self.dataset.path}: {len(self.dataset.train):,} train tokens, {len(self.dataset.val):,} val tokens",
        ))

    # ------------------------------------------------------------ checkpoints in

    def _restore(self, init_from: str) -> None:
        """Nothing for scratch; everything for resume; the weights alone for another checkpoint."""
        own = self.out_dir / CHECKPOINT_NAME
        if init_from == "scratch":
            if own.exists() and self.master and not self.train_cfg.eval_only:
                self.say(f"note: {own} exists; this run (init_from=scratch) replaces it at its first "
                         "checkpoint (init_from=resume would continue it)")
            return
        if init_from == "resume":
            path = own
            if not path.exists():
                raise RunError(f"init_from=resume but {path} does not exist (out_dir={self.log_cfg.out_dir}); "
                               "point out_dir at the run to continue, or start one with init_from=scratch")
        else:
            path = Path(init_from).expanduser()
            path = path / CHECKPOINT_NAME if path.is_dir() else path
        ckpt = load_checkpoint(path, map_location="cpu")
        version = ckpt.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise RunError(f"{path} was written by a newer slo (schema {version}, this one reads up to "
                           f"{SCHEMA_VERSION}); upgrade slo")
        if "model_args" not in ckpt:
            raise RunError(f"{path} has no model_args, so its model cannot be checked against the config; "
                           "use a ckpt.pt written by slo or nanoGPT")
        check_compatible(ckpt["model_args"], self.args, source=str(path))
        try:
            self.raw_model.load_state_dict(clean_state_dict(ckpt["model"]))
        except RuntimeError as e:
            raise RunError(f"the weights in {path} do not fit the model ({first_line(e)}); "
                           "use a checkpoint made with this model config") from None
        if init_from == "resume" or (own.exists() and path.resolve() == own.resolve()):
            self.load_state_dict(ckpt)
            self.resumed = True
            self.say(f"resuming {path} at iter {self.progress.iter_num}")
        else:
            self.say(f"starting from the weights of {path} (iter {ckpt.get('iter_num', '?')}) "
                     "with a fresh optimizer, schedule and iter 0")

    def load_state_dict(self, ckpt: dict) -> None:
        """Optimizer, progress, data position, loss scaler and random states of a checkpoint."""
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise RunError(f"the checkpoint's optimizer state does not fit this model ({e}); "
                           "start with init_from=scratch, or finetune with init_from=PATH") from None
        self.progress = Progress(
            iter_num=int(ckpt.get("iter_num", 0)),
            best_val_loss=float(ckpt.get("best_val_loss", math.inf)),
            last_eval_iter=int(ckpt.get("last_eval_iter", -1)),
            elapsed=float(ckpt.get("elapsed", 0.0)),
            last_saved_iter=int(ckpt.get("iter_num", 0)),
        )
        own = self._own_rank_state(ckpt)
        if "data" in own:
            self.batches.load_state_dict(own["data"])
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        if "rng" in own:
            set_rng_state(own["rng"])

    def _own_rank_state(self, ckpt: dict) -> dict:
        """This rank's data position and random states: from ``ranks`` in a data-parallel checkpoint,
        else the top-level ones (rank 0's). A rank the checkpoint has none for starts afresh."""
        ranks = ckpt.get("ranks") or [{k: ckpt[k] for k in ("data", "rng") if k in ckpt}]
        if len(ranks) != self.world_size:
            self.say(f"note: the checkpoint was written by {len(ranks)} process(es) and this run has "
                     f"{self.world_size}: the data streams of the ranks differ from an uninterrupted run's")
        return ranks[self.rank] if self.rank < len(ranks) else {}

    # ------------------------------------------------------------ checkpoints out

    def state_dict(self) -> dict:
        """nanoGPT's checkpoint keys, plus what an exact resume needs. Plain types and tensors only."""
        p = self.progress
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_args": self.args.to_dict(),
            "iter_num": p.iter_num,
            "best_val_loss": p.best_val_loss,
            "config": self.cfg.to_dict(),
            "env": self.cfg.env,
            "meta": self.dataset.meta or None,  # the tokenizer travels with the weights
            "schema_version": SCHEMA_VERSION,
            "last_eval_iter": p.last_eval_iter,
            "elapsed": p.elapsed,
            "data": self.batches.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": get_rng_state(),
        }

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def save(self) -> None:
        """Every rank calls it (each one's data position and random states are gathered); rank 0 writes."""
        ranks = self.group.gather({"data": self.batches.state_dict(), "rng": get_rng_state()})
        if self.master:
            state = self.state_dict()
            if self.world_size > 1:
                state["ranks"] = ranks
            save_checkpoint(self.checkpoint_path, state)
        self.progress.last_saved_iter = self.progress.iter_num

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
        return torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.train_cfg.grad_clip)

    def optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self) -> float:
        """One optimizer step at progress.iter_num: accumulate, clip, check, step. Returns the mean loss.

        A non-finite loss (or gradient norm, without a loss scaler) raises RunError before the
        weights change, so nothing bad is ever saved.
        """
        set_lr(self.optimizer, self.schedule(self.progress.iter_num))
        losses = self._guarded("train", self._accumulate)
        with self.timer("optimizer"):
            norm = self.clip_gradients()
            checked = torch.stack(losses).mean().float()
            if norm is not None and not self.scaler.is_enabled():
                checked = torch.stack((checked, norm.float()))
            # the mean over ranks: a non-finite value on any rank makes it non-finite on all, so all stop
            values = self.group.mean(checked).reshape(-1).tolist()  # a sync point: the check needs the numbers
            loss = values[0]
            if not all(math.isfinite(v) for v in values):
                what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {values[1]}"
                raise RunError(f"{what} at iter {self.progress.iter_num}; the run stopped before updating the "
                               f"weights. {self._kept_checkpoint()} Try a lower learning_rate, a longer "
                               "warmup_iters, grad_clip=1.0, or dtype=bfloat16/float32 instead of float16")
            self.optimizer_step()
        return loss

    def _accumulate(self) -> list[torch.Tensor]:
        losses = []
        for micro in range(self.micro_steps):
            with self.timer("data"):
                x, y = self.next_batch()
            # DDP averages gradients across ranks in the backward of the last micro-step only
            self.group.sync_gradients(self.train_model, micro == self.micro_steps - 1)
            with self.timer("forward_backward"):
                losses.append(self.forward_backward(x, y))
        return losses

    def _kept_checkpoint(self) -> str:
        saved = self.progress.last_saved_iter
        if saved is None:
            return "No checkpoint was saved by this run."
        return f"The last good checkpoint, {self.checkpoint_path} (iter {saved}), is kept."

    def _guarded(self, mode: str, step):
        """step(), and when it is the first compiled call in this mode and compilation fails,
        a message and step() again without torch.compile, from the same batches."""
        if self.model is self.raw_model or mode in self._compile_proven:
            return step()
        data_state, rng_state = self.batches.state_dict(), torch.get_rng_state()
        try:
            result = step()
        except (RunError, KeyboardInterrupt):
            raise
        except Exception as e:  # Dynamo and Inductor raise many types; all mean "cannot compile here"
            if self.world_size > 1:  # the ranks cannot all swap models at once
                raise compile_failure_in_group(e) from e
            self.say(compile_failure_message(e))
            self.model = self.train_model = self.raw_model
            self.optimizer.zero_grad(set_to_none=True)
            self.batches.load_state_dict(data_state)
            torch.set_rng_state(rng_state)
            return step()
        self._compile_proven.add(mode)
        return result

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Mean loss over eval_iters batches of each split; the same batches at every evaluation.
        None when a stop signal arrives meanwhile. Rank 0 evaluates (with the model outside DDP,
        whose forward the other ranks would have to join) and the others receive its numbers."""
        losses = None
        if self.master:
            self.model.eval()
            try:
                losses = self._guarded("eval", self._evaluate_splits)
            finally:
                self.model.train()
        return self.group.from_master(losses)

    def _evaluate_splits(self) -> dict[str, float] | None:
        out = {}
        for index, (split, tokens) in enumerate((("train", self.dataset.train), ("val", self.dataset.val))):
            batches = Batches(tokens, self.data_cfg.batch_size, self.data_cfg.block_size, self.device,
                              seed=self.train_cfg.seed + EVAL_SEED_OFFSET + index, rank=self.rank,
                              vocab_size=self.args.vocab_size, name=f"{self.dataset.path}'s {split} split")
            total = torch.zeros((), device=self.device)
            for _ in range(self.log_cfg.eval_iters):
                if self.stop_signal is not None:
                    return None
                x, y = batches.next()
                with autocast(self.device, self.dtype):
                    _, loss = self.model(x, y)
                total += loss.float()
            out[split] = (total / self.log_cfg.eval_iters).item()
        bad = {k: v for k, v in out.items() if not math.isfinite(v)}
        if bad:
            raise RunError(f"the {' and '.join(bad)} loss is {list(bad.values())[0]} at the evaluation of iter "
                           f"{self.progress.iter_num}; nothing was saved. {self._kept_checkpoint()} "
                           "Try a lower learning_rate or dtype=float32")
        return out

    # ------------------------------------------------------------ the loop

    def train(self) -> TrainResult:
        """Run to max_iters (or evaluate once with eval_only); a stop signal saves and returns early."""
        if self.train_cfg.eval_only:
            losses = self.evaluate()
            if losses is not None:
                self.say(format_eval_line({"iter": self.progress.iter_num, "train_loss": losses["train"],
                                           "val_loss": losses["val"]}))
            val = losses["val"] if losses else math.inf
            return TrainResult(self.progress.iter_num, val, None)
        if self.master:
            self.write_run_files()
            self.log = RunLog(self.out_dir, self.log_cfg, flat_config=self.cfg.to_dict(), stream=self.stream,
                              resume_iter=self.progress.iter_num if self.resumed else None)
            self.say(self.describe())
        previous = self._catch_stop_signals()
        try:
            return self._loop()
        except torch.cuda.OutOfMemoryError:
            raise RunError(f"out of memory on {self.device} at batch_size={self.data_cfg.batch_size}, "
                           f"block_size={self.data_cfg.block_size}: lower batch_size (and raise "
                           "gradient_accumulation_steps to keep the tokens per step)") from None
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.log.close()

    def _loop(self) -> TrainResult:
        p, log_cfg = self.progress, self.log_cfg
        max_iters, start_iter = self.train_cfg.max_iters, p.iter_num
        self.log.open_bar(max_iters, start_iter)
        clock = time.perf_counter() - p.elapsed  # p.elapsed = now - clock
        interval_start, interval_iters = time.perf_counter(), 0
        loss = None
        while True:
            p.elapsed = time.perf_counter() - clock
            if self._stop_requested():
                name = signal.Signals(self.stop_signal).name
                if p.iter_num > start_iter:
                    if p.last_saved_iter != p.iter_num:
                        self.save()
                    self.say(f"{name}: saved {self.checkpoint_path} at iter {p.iter_num}; "
                             "init_from=resume continues the run")
                else:
                    self.say(f"{name}: stopped at iter {p.iter_num} before any step; nothing to save")
                return TrainResult(p.iter_num, p.best_val_loss, loss, self.stop_signal)
            if (p.iter_num % log_cfg.eval_interval == 0 or p.iter_num == max_iters) and p.last_eval_iter != p.iter_num:
                losses = self.evaluate()
                if losses is None:
                    continue  # stopped meanwhile: save above
                self._after_eval(losses, start_iter, clock)
                interval_start, interval_iters = time.perf_counter(), 0
            if p.iter_num >= max_iters:
                return TrainResult(p.iter_num, p.best_val_loss, loss)
            if self._stop_requested():  # arrived after the evaluation: save before another step
                continue
            lr = self.schedule(p.iter_num)
            loss = self.train_step()
            p.iter_num += 1
            interval_iters += 1
            self.log.advance(loss)
            step = p.iter_num - 1
            if step % log_cfg.log_interval == 0 or p.iter_num == max_iters:
                seconds = time.perf_counter() - interval_start
                self._log_step(step, loss, lr, seconds, interval_iters, time.perf_counter() - clock)
                interval_start, interval_iters = time.perf_counter(), 0

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
        if p.iter_num > start_iter and (improved or self.log_cfg.always_save_checkpoint):
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
               "tokens_per_s": tokens_per_s, "mfu": mfu, "memory_mb": memory_mb(self.device),
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


def get_rng_state() -> dict:
    """Every random state a step can draw from, as tensors and plain values."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = (kind, keys.tolist(), int(pos), int(has_gauss), float(cached))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    try:
        torch.set_rng_state(state["torch"].cpu())
        if state.get("python") is not None:
            version, internal, gauss = state["python"]
            random.setstate((version, tuple(internal), gauss))
        if state.get("numpy") is not None:
            kind, keys, pos, has_gauss, cached = state["numpy"]
            np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]][:torch.cuda.device_count()])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RunError(f"the checkpoint's random states cannot be restored ({e}); "
                       "start with init_from=scratch, or finetune with init_from=PATH") from None
