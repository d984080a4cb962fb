"""What a checkpoint holds: nanoGPT's keys, plus what an exact resume needs.

A checkpoint (``ckpt.pt``, or a sharded folder's ``trainer.pt`` beside its
shards) is a dict of tensors and plain values only:

- ``model``, ``optimizer``: the weights and the optimizer state (whole, or in
  the sharded folder's shards);
- ``model_args``: the model's shape (nanoGPT's keys alone for a model nanoGPT
  can build, else every shape key: slo.runner.checkpoint.store);
- ``iter_num``, ``best_val_loss``, ``config`` (the flat resolved config),
  ``env``, ``meta`` (the tokenizer), ``schema_version``;
- ``last_eval_iter``, ``elapsed`` (seconds of training over every resume):
  the rest of ``Progress``;
- ``data`` (the batch stream's position), ``rng`` (every random state),
  ``scaler`` (float16's loss scale), and under data parallelism ``ranks``:
  each rank's ``data`` and ``rng``.

``run_fields`` makes every field but the weights and optimizer state;
slo.runner.checkpoint.resume reads them back.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import RunError, first_line
from ...schema import SCHEMA_VERSION
from .store import saved_model_args


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    iter_num: int = 0
    best_val_loss: float = math.inf
    last_eval_iter: int = -1
    elapsed: float = 0.0  # seconds of training, over every resume
    last_saved_iter: int | None = None


@dataclass
class RunParts:
    """What a checkpoint is taken from and restored into: the model, its optimizer and loss scaler, the
    batch stream, and the collectives the ranks share (with this rank's place among them)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: object  # torch.amp.GradScaler, or FSDP's ShardedGradScaler
    batches: object  # slo.runner.data.batches.Batches
    group: object  # slo.runner.distributed's SingleProcessGroup, DataParallelGroup or FsdpGroup
    rank: int = 0
    world_size: int = 1


def run_fields(progress: Progress, *, args, cfg, meta: dict | None, batches, scaler) -> dict:
    """A checkpoint's fields besides the weights and the optimizer state."""
    return {
        "model_args": saved_model_args(args),
        "iter_num": progress.iter_num,
        "best_val_loss": progress.best_val_loss,
        "config": cfg.to_dict(),
        "env": cfg.env,
        "meta": meta,  # the tokenizer travels with the weights
        "schema_version": SCHEMA_VERSION,
        "last_eval_iter": progress.last_eval_iter,
        "elapsed": progress.elapsed,
        "data": batches.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": get_rng_state(),
    }


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
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as e:
        raise RunError(f"the checkpoint's random states cannot be restored ({first_line(e)}); "
                       "start with init_from=scratch, or finetune with init_from=PATH") from None
