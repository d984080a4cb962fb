"""What the steps since the last mark cost: tokens per second, MFU, memory and milliseconds per step."""

from __future__ import annotations

import time

from ..device import memory_mb, peak_flops
from ..model.optimizers import held_mb


class Throughput:
    def __init__(self, tokens_per_iter: int, flops_per_token: float, device, dtype, world_size: int = 1):
        self.tokens_per_iter, self.flops_per_token = tokens_per_iter, flops_per_token
        self.device, self.dtype, self.world_size = device, dtype, world_size
        self._peak: float | None = None  # the device's peak FLOP/s, measured once, when first needed
        self.mark()

    def mark(self) -> None:
        """Start counting again (after an evaluation, or a logged step)."""
        self.start, self.iters = time.perf_counter(), 0

    def step(self) -> None:
        self.iters += 1

    def take(self, model, optimizer) -> dict:
        """tokens_per_s and mfu (None when no time has passed), memory_mb (the device's, or the process's
        peak), state_mb (what model and optimizer hold) and ms_per_iter since the mark; marks anew."""
        seconds, iters = time.perf_counter() - self.start, self.iters
        tokens_per_s = self.tokens_per_iter * iters / seconds if seconds > 0 else None
        mfu = None
        if tokens_per_s is not None:
            if self._peak is None:
                self._peak = peak_flops(self.device, self.dtype)
            mfu = self.flops_per_token * tokens_per_s / (self._peak * self.world_size)
        self.mark()
        return {"tokens_per_s": tokens_per_s, "mfu": mfu, "memory_mb": memory_mb(self.device),
                "state_mb": held_mb(model, optimizer), "ms_per_iter": 1000 * seconds / iters}
