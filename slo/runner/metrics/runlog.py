"""What a run reports: console lines under a progress bar, metrics.jsonl, wandb, TensorBoard.

Only the master rank builds a ``RunLog``; the others get a silent one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from pathlib import Path

from ...errors import RunError
from ...outdir.files import METRICS_NAME, PREVIOUS_METRICS_NAME, as_record
from .tensorboard import TensorBoardLog, scalar_name


def describe_run(model, dataset, *, device, dtype, compiled: bool, fsdp_ranks: int | None, optimizer: str,
                 data_cfg, tokens_per_iter: int) -> str:
    """The three lines a run starts with: its model, how it runs, and its data."""
    a, d = model.args, data_cfg
    sharded = f", fsdp over {fsdp_ranks} rank{'s' if fsdp_ranks > 1 else ''}" if fsdp_ranks else ""
    return "\n".join((
        f"model: {model.num_params() / 1e6:.2f}M parameters ({a.n_layer} layers, {a.n_head} heads, "
        f"{a.n_embd} wide, vocab {a.vocab_size}, block {a.block_size})",
        f"run: {device}, {str(dtype).removeprefix('torch.')}, {'compiled' if compiled else 'not compiled'}"
        f"{sharded}, {optimizer} | {tokens_per_iter:,} tokens per step (batch {d.batch_size} x block "
        f"{d.block_size} x accumulation {d.gradient_accumulation_steps})",
        f"data: {dataset.path}: {len(dataset.train):,} train tokens, {len(dataset.val):,} val tokens",
    ))


def format_train_line(rec: dict) -> str:
    """``iter 120: loss 2.3412 | lr 9.80e-04 | 45,210 tok/s | mfu 12.3% | mem 350 MiB | 181.2 ms/iter``"""
    parts = [f"iter {rec['iter']}: loss {rec['loss']:.4f}", f"lr {rec['lr']:.2e}"]
    if rec.get("tokens_per_s") is not None:
        parts.append(f"{rec['tokens_per_s']:,.0f} tok/s")
    if rec.get("mfu") is not None:
        parts.append(f"mfu {100 * rec['mfu']:.1f}%")
    if rec.get("memory_mb") is not None:
        parts.append(f"mem {rec['memory_mb']:,.0f} MiB")
    if rec.get("ms_per_iter") is not None:
        parts.append(f"{rec['ms_per_iter']:.1f} ms/iter")
    return " | ".join(parts)


def format_eval_line(rec: dict) -> str:
    return f"eval {rec['iter']}: train loss {rec['train_loss']:.4f}, val loss {rec['val_loss']:.4f}"


def console_print(text: str, stream=None) -> None:
    """print(text) that outlives its reader: when the pipe closes (``slo train ... | head``), later
    lines go nowhere and the run goes on to its checkpoints."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        if stream in (sys.stdout, sys.stderr):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def trim_metrics(path: Path, resume_iter: int) -> int:
    """Drop the records a resumed run will write again: train steps from ``resume_iter``
    on, evaluations after it (the checkpoint was saved right after the one at it). A line
    that is not a record (files.as_record) is dropped too; returns how many were."""
    if not path.is_file():
        return 0
    kept = []
    damaged = 0
    with open(path, "rb") as f:
        for line in f:
            rec = as_record(line)
            if rec is None:
                damaged += bool(line.strip())
                continue
            it = rec["iter"]
            if ("val_loss" in rec and it <= resume_iter) or ("val_loss" not in rec and it < resume_iter):
                kept.append(line.rstrip(b"\r\n") + b"\n")
    path.write_bytes(b"".join(kept))
    return damaged


def _plain(value):
    """JSON has no inf or nan: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """Console, progress bar and metric sinks of one run."""

    def __init__(self, out_dir: Path | None, logging_cfg=None, *, flat_config: dict | None = None,
                 resume_iter: int | None = None, stream=None):
        self.enabled = out_dir is not None
        self.stream = stream or sys.stdout
        self.bar = None
        self.metrics = None
        self.wandb = None
        self.tensorboard = None
        if not self.enabled:
            return
        path = Path(out_dir) / METRICS_NAME
        try:
            if resume_iter is None:
                if path.is_file() and path.stat().st_size:  # an earlier run's: kept, not wiped
                    os.replace(path, path.with_name(PREVIOUS_METRICS_NAME))
                    self.say(f"note: the earlier run's {METRICS_NAME} is now {PREVIOUS_METRICS_NAME}")
                path.write_text("", encoding="utf-8")
            else:
                damaged = trim_metrics(path, resume_iter)
                if damaged:
                    self.say(f"note: {damaged} damaged line(s) of {path} (not JSON records of a run) were dropped")
            self.metrics = open(path, "a", encoding="utf-8")
        except OSError as e:
            raise _write_error(path, e) from None
        try:
            if logging_cfg is not None and logging_cfg.wandb_log:
                self.wandb = _start_wandb(logging_cfg, flat_config or {}, out_dir, resume_iter is not None)
            if logging_cfg is not None and logging_cfg.tensorboard_log:
                self.tensorboard = TensorBoardLog(out_dir, resume_iter)
        except BaseException:
            self.close()
            raise

    def say(self, text: str) -> None:
        """One console line, written above the progress bar (a log not enabled prints it alone)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            console_print(text, self.stream)

    def open_bar(self, total: int, initial: int) -> None:
        """A progress bar with ETA, only when the console is a terminal."""
        if not self.enabled or not self.stream.isatty():
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=self.stream,
                        leave=False, smoothing=0.1)

    def advance(self, loss: float | None = None) -> None:
        if self.bar is not None:
            if loss is not None:
                self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            self.bar.update(1)

    def record(self, rec: dict) -> None:
        """One train or eval record to metrics.jsonl, wandb and TensorBoard."""
        if not self.enabled:
            return
        rec = {k: _plain(v) for k, v in rec.items()}
        try:
            self.metrics.write(json.dumps(rec) + "\n")
            self.metrics.flush()
        except OSError as e:
            raise _write_error(Path(self.metrics.name), e) from None
        step = rec["iter"]
        values = {k: v for k, v in rec.items() if k != "iter" and isinstance(v, (int, float))}
        if self.wandb is not None:
            self.wandb.log({scalar_name(k): v for k, v in values.items()}, step=step)
        if self.tensorboard is not None:
            for k, v in values.items():
                self.tensorboard.add_scalar(scalar_name(k), v, step)

    def close(self) -> None:
        """Close every sink; safe to call twice."""
        for name, method in (("bar", "close"), ("metrics", "close"), ("wandb", "finish"), ("tensorboard", "close")):
            sink = getattr(self, name)
            if sink is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):  # a full disk was reported where it happened
                    getattr(sink, method)()


def _write_error(path: Path, e: OSError) -> RunError:
    return RunError(f"cannot write {path}: {e.strerror or e}; free some disk space or point out_dir at a "
                    "writable folder (init_from=resume continues from the last checkpoint)")


def _start_wandb(logging_cfg, flat_config: dict, out_dir, resuming: bool):
    try:
        import wandb
    except ImportError:
        raise RunError("wandb_log=True but wandb is not installed: pip install 'slo[wandb]', "
                       "or set wandb_log=False (ENV WANDB_MODE=offline logs without a network)") from None
    try:
        return wandb.init(project=logging_cfg.wandb_project, name=logging_cfg.wandb_run_name,
                          config=flat_config, dir=str(out_dir), resume="allow" if resuming else None)
    except Exception as e:  # wandb raises its own types for login and network problems
        raise RunError(f"wandb could not start ({type(e).__name__}: {e}); run `wandb login`, "
                       "set ENV WANDB_MODE=offline, or set wandb_log=False") from None

