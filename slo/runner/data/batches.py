"""Random training batches: (x, y) windows of a dataset's tokens, with a resumable stream."""

from __future__ import annotations

import numpy as np

from ...errors import RunError, first_line
from .datasets import VOCAB_ADVICE, ShardedTokens, check_length


class Batches:
    """Random (x, y) windows of ``block_size`` tokens; y is x shifted by one.

    Rows are gathered in one numpy indexing operation, not a Python loop per
    row. The random stream is this object's own, seeded by (seed, rank), and
    ``state_dict`` captures its position so a resumed run draws exactly the
    batches an uninterrupted one would have.
    """

    def __init__(self, tokens, batch_size: int, block_size: int, device="cpu", seed: int = 1337, rank: int = 0,
                 vocab_size: int | None = None, name: str = "the token array"):
        import torch

        self.vocab_size = vocab_size  # when given, every batch is checked against it
        self.name = name

        self.batch_size = batch_size
        self.block_size = block_size
        self.device = torch.device(device)
        self.pin = self.device.type == "cuda"
        shards = tokens.shards if isinstance(tokens, ShardedTokens) else [tokens]
        check_length(tokens, block_size, "the token array")
        # one view per shard whose rows are every (block_size + 1)-token window; no copy
        self._windows = [
            np.lib.stride_tricks.sliding_window_view(s, block_size + 1) for s in shards if len(s) > block_size
        ]
        self._window_ends = np.cumsum([len(w) for w in self._windows])
        self.seed, self.rank = seed % 2**64, rank
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, rank])))
        self.drawn = 0

    def restart(self, step: int) -> None:
        """A stream of its own for (seed, rank, step): where a resumed run cannot continue the saved one."""
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.rank, step])))
        self.drawn = 0

    def _rows(self) -> np.ndarray:
        picks = self.rng.integers(0, self._window_ends[-1], size=self.batch_size)
        if len(self._windows) == 1:
            return self._windows[0][picks]
        shard = np.searchsorted(self._window_ends, picks, side="right")
        starts = np.concatenate([[0], self._window_ends[:-1]])
        rows = np.empty((self.batch_size, self.block_size + 1), dtype=self._windows[0].dtype)
        for s in np.unique(shard):  # one gather per shard hit, never one per row
            hit = shard == s
            rows[hit] = self._windows[s][picks[hit] - starts[s]]
        return rows

    def next(self):
        """The next (x, y) pair, int64 tensors of shape (batch_size, block_size) on the device."""
        import torch

        rows = self._rows()
        if self.vocab_size is not None and int(rows.max()) >= self.vocab_size:
            raise RunError(f"{self.name} holds token id {int(rows.max())}, but the model's vocabulary has only "
                           f"{self.vocab_size} ids (0..{self.vocab_size - 1}): {VOCAB_ADVICE}")
        x = np.empty((self.batch_size, self.block_size), dtype=np.int64)
        y = np.empty((self.batch_size, self.block_size), dtype=np.int64)
        x[...] = rows[:, :-1]
        y[...] = rows[:, 1:]
        self.drawn += 1
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        if self.pin:
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        if self.device.type != "cpu":
            return x.to(self.device), y.to(self.device)
        return x, y

    __next__ = next

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "drawn": self.drawn}

    def load_state_dict(self, state: dict) -> None:
        try:
            self.rng.bit_generator.state = state["rng"]
            self.drawn = int(state["drawn"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
            raise RunError(
                f"the checkpoint's data position cannot be restored ({first_line(e)}); start with init_from=scratch"
            ) from None
