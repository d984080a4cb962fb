"""A run's evaluation: the mean loss of each split over the same eval_iters batches every time."""

from __future__ import annotations

import math

import torch

from ..errors import RunError
from .batches import Batches
from .device import autocast
from .saves import kept_checkpoint

EVAL_SEED_OFFSET = 1_000_003  # evaluation batches get their own stream, the same at every evaluation


def eval_losses(trainer) -> dict[str, float] | None:
    """Rank 0's eval batches (all of them; where the ranks hold shards, rank r takes batches r, r + N,
    ... and every rank runs as many forwards, a rank past the last batch adding nothing)."""
    out = {}
    together = trainer.group.shards
    ranks = trainer.world_size if together else 1
    share = -(-trainer.log_cfg.eval_iters // ranks)
    for index, (split, tokens) in enumerate((("train", trainer.dataset.train), ("val", trainer.dataset.val))):
        batches = Batches(tokens, trainer.data_cfg.batch_size, trainer.data_cfg.block_size, trainer.device,
                          seed=trainer.train_cfg.seed + EVAL_SEED_OFFSET + index, rank=0,
                          vocab_size=trainer.args.vocab_size, name=f"{trainer.dataset.path}'s {split} split")
        total = torch.zeros((), device=trainer.device)
        for i in range(share * ranks):
            if trainer.stop_signal is not None and not together:  # the ranks sharing it stop at the end
                return None
            x, y = batches.next()
            if i % ranks != trainer.rank % ranks:
                continue
            with autocast(trainer.device, trainer.dtype):
                _, loss = trainer.model(x, y)
            if i < trainer.log_cfg.eval_iters:
                total += loss.float()
        if together:
            total = trainer.group.mean(total) * ranks  # the sum over every rank's batches
        out[split] = (total / trainer.log_cfg.eval_iters).item()
    bad = {k: v for k, v in out.items() if not math.isfinite(v)}
    if bad:
        raise RunError(f"the {' and '.join(bad)} loss is {list(bad.values())[0]} at the evaluation of iter "
                       f"{trainer.progress.iter_num}; nothing was saved. {kept_checkpoint(trainer)} "
                       "Try a lower learning_rate or dtype=float32")
    return out
