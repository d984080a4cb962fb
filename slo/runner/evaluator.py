"""A run's evaluation: the mean loss of each split over the same eval_iters batches every time."""

from __future__ import annotations

import torch

from .data.batches import Batches
from .device import autocast

EVAL_SEED_OFFSET = 1_000_003  # evaluation batches get their own stream, the same at every evaluation


class Evaluator:
    """Made from the splits (name: tokens), the batch shape, the seed, the device and dtype, and the
    collectives; ``run(model)`` is the mean loss of each split. Rank 0 evaluates alone, unless the
    ranks hold shards of the model: then rank r takes batches r, r + N, ... and every rank runs as
    many forwards, a rank past the last batch adding nothing."""

    def __init__(self, splits: dict, *, batch_size: int, block_size: int, vocab_size: int, seed: int, iters: int,
                 device: torch.device, dtype: torch.dtype, group, rank: int = 0, where: str = "the dataset"):
        self.splits, self.iters, self.seed, self.where = splits, iters, seed, where
        self.batch_size, self.block_size, self.vocab_size = batch_size, block_size, vocab_size
        self.device, self.dtype, self.group, self.rank = device, dtype, group, rank

    def run(self, model, stopped=lambda: False) -> dict[str, float] | None:
        """Each split's mean loss under model; None when stopped() turns true meanwhile (where the ranks
        share the batches, they finish together instead)."""
        model.eval()
        try:
            return self._losses(model, stopped)
        finally:
            model.train()

    def _losses(self, model, stopped) -> dict[str, float] | None:
        out = {}
        together = self.group.shards
        ranks = self.group.world_size if together else 1
        share = -(-self.iters // ranks)
        for index, (split, tokens) in enumerate(self.splits.items()):
            batches = Batches(tokens, self.batch_size, self.block_size, self.device,
                              seed=self.seed + EVAL_SEED_OFFSET + index, rank=0, vocab_size=self.vocab_size,
                              name=f"{self.where}'s {split} split")
            total = torch.zeros((), device=self.device)
            for i in range(share * ranks):
                if not together and stopped():
                    return None
                x, y = batches.next()
                if i % ranks != self.rank % ranks:
                    continue
                with autocast(self.device, self.dtype):
                    _, loss = model(x, y)
                if i < self.iters:
                    total += loss.float()
            if together:
                total = self.group.mean(total) * ranks  # the sum over every rank's batches
            out[split] = (total / self.iters).item()
        return out
