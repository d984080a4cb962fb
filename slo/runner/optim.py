"""AdamW with decay and no-decay parameter groups, and the learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import RunError


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Matrices and embeddings (dim >= 2) decay; biases and norm gains (dim < 2) do not."""
    params = [p for p in model.parameters() if p.requires_grad]  # tied weights appear once
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def make_optimizer(model: torch.nn.Module, train, device: torch.device) -> tuple[torch.optim.AdamW, str]:
    """AdamW from the TRAIN keys, and the implementation it uses: 'fused' where this
    PyTorch has a fused kernel for the device (CUDA, CPU, MPS in recent versions),
    else 'foreach'."""
    groups = param_groups(model, train.weight_decay)
    common = dict(lr=train.learning_rate, betas=(train.beta1, train.beta2))
    try:
        return torch.optim.AdamW(groups, fused=True, **common), "fused"
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device here
        return torch.optim.AdamW(param_groups(model, train.weight_decay), foreach=True, **common), "foreach"


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass(frozen=True)
class Schedule:
    """Learning rate per step, from the LR_SCHEDULE keys and the peak learning_rate.

    Every shape warms up linearly over ``warmup_iters`` (step i gets
    lr * (i + 1) / (warmup_iters + 1), so step 0 never has lr 0), then:
    cosine and linear decay to ``min_lr`` at ``lr_decay_iters``; constant keeps
    ``learning_rate``; wsd keeps ``learning_rate`` until the last
    ``cooldown_iters`` steps before ``lr_decay_iters`` and decays linearly to
    ``min_lr`` over them. After ``lr_decay_iters`` the rate stays at ``min_lr``
    (``learning_rate`` for constant). ``decay_lr=False`` is nanoGPT's: the rate
    is ``learning_rate`` at every step, without warmup.
    """

    learning_rate: float
    shape: str = "cosine"
    decay_lr: bool = True
    warmup_iters: int = 0
    lr_decay_iters: int = 0
    min_lr: float = 0.0
    cooldown_iters: int = 0

    @classmethod
    def from_config(cls, train, lr_schedule) -> "Schedule":
        s = lr_schedule
        return cls(train.learning_rate, s.schedule, s.decay_lr, s.warmup_iters, s.lr_decay_iters,
                   s.min_lr, s.cooldown_iters)

    def __post_init__(self):
        if self.shape not in ("cosine", "linear", "constant", "wsd"):
            raise RunError(f"unknown schedule {self.shape!r}: use cosine, linear, constant or wsd")

    def __call__(self, it: int) -> float:
        lr, low = self.learning_rate, self.min_lr
        if not self.decay_lr:
            return lr
        if it < self.warmup_iters:
            return lr * (it + 1) / (self.warmup_iters + 1)
        if self.shape == "constant":
            return lr
        if it >= self.lr_decay_iters:
            return low
        if self.shape == "wsd":
            decay_start = self.lr_decay_iters - self.cooldown_iters
            if it < decay_start:
                return lr
            return low + (lr - low) * (self.lr_decay_iters - it) / self.cooldown_iters
        ratio = (it - self.warmup_iters) / (self.lr_decay_iters - self.warmup_iters)  # in [0, 1)
        if self.shape == "linear":
            return low + (1.0 - ratio) * (lr - low)
        return low + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - low)
