"""The optimizers (AdamW, or Muon beside AdamW) with their parameter groups, and the learning-rate schedules.

Every group carries an ``lr_scale``: ``set_lr`` gives it the step's learning
rate times that, so the schedule moves every group by the same factor. The
AdamW groups are nanoGPT's two (matrices and embeddings decay, biases and norm
gains do not), plus one for the embeddings and one for an untied head when
``embedding_lr_scale`` or ``head_lr_scale`` is not 1. With ``optimizer=muon``
the blocks' 2-D weight matrices go to ``torch.optim.Muon`` instead, at
``muon_lr`` (its ``lr_scale`` is ``muon_lr / learning_rate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import RunError
from .muon import MuonWithAdamW, muon_class, parts_of

EMBEDDINGS = ("transformer.wte.weight", "transformer.wpe.weight")  # a tied head is the token embedding
HEAD = "lm_head.weight"


def parameter_roles(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """The trainable parameters by role, each once (a tied head is the token embedding), in the model's
    order: "hidden" (the 2-D weight matrices of the blocks), "embedding" (token and position tables),
    "head" (an untied output head), "vector" (biases and norm gains: every parameter of dim < 2)."""
    roles: dict[str, list[torch.nn.Parameter]] = {"hidden": [], "embedding": [], "head": [], "vector": []}
    for name, p in model.named_parameters():  # tied weights appear once, under the embedding's name
        if not p.requires_grad:
            continue
        if p.dim() < 2:
            role = "vector"
        elif name in EMBEDDINGS:
            role = "embedding"
        elif name == HEAD:
            role = "head"
        else:
            role = "hidden"
        roles[role].append(p)
    return roles


def param_groups(model: torch.nn.Module, weight_decay: float, embedding_lr_scale: float = 1.0,
                 head_lr_scale: float = 1.0, hidden: bool = True) -> list[dict]:
    """AdamW's groups: matrices and embeddings (dim >= 2) decay; biases and norm gains (dim < 2) do not.
    The embeddings and an untied head get groups of their own when their lr scale is not 1 (after the
    two, each scaled, decaying); hidden=False leaves the blocks' matrices out (Muon has them)."""
    roles = parameter_roles(model)
    scaled = {"embedding": embedding_lr_scale, "head": head_lr_scale}
    own = {id(p) for role, scale in scaled.items() if scale != 1 for p in roles[role]}
    matrices = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2 and id(p) not in own]
    if not hidden:
        muon = {id(p) for p in roles["hidden"]}
        matrices = [p for p in matrices if id(p) not in muon]
    groups = [{"params": matrices, "weight_decay": weight_decay, "lr_scale": 1.0},
              {"params": roles["vector"], "weight_decay": 0.0, "lr_scale": 1.0}]
    groups += [{"params": roles[role], "weight_decay": weight_decay, "lr_scale": scale}
               for role, scale in scaled.items() if scale != 1 and roles[role]]
    return [g for g in groups if g["params"]]


def make_optimizer(model: torch.nn.Module, train, device: torch.device,
                   fused: bool = True) -> tuple[torch.optim.Optimizer, str]:
    """The optimizer the TRAIN keys ask for, and the AdamW implementation it uses: 'fused' where this
    PyTorch has a fused kernel for the device (CUDA, CPU, MPS in recent versions) and fused is True,
    else 'foreach'. optimizer=muon: a MuonWithAdamW (RunError naming the torch it needs where torch
    has no Muon)."""
    muon = muon_class() if train.optimizer == "muon" else None  # first: say which torch has it
    adamw, kind = _adamw(model, train, hidden=muon is None, fused=fused)
    if muon is None:
        return adamw, kind
    group = {"params": parameter_roles(model)["hidden"], "lr_scale": train.muon_lr / train.learning_rate}
    matrices = muon([group], lr=train.muon_lr, momentum=train.muon_momentum, weight_decay=train.muon_weight_decay,
                    nesterov=True)
    return MuonWithAdamW(matrices, adamw), kind


def _adamw(model: torch.nn.Module, train, hidden: bool, fused: bool) -> tuple[torch.optim.AdamW, str]:
    """AdamW over param_groups(model, ...) with the TRAIN keys, fused where it can be (and fused is True)."""
    def groups():
        return param_groups(model, train.weight_decay, train.embedding_lr_scale, train.head_lr_scale, hidden)

    common = dict(lr=train.learning_rate, betas=(train.beta1, train.beta2))
    if fused:
        try:
            return torch.optim.AdamW(groups(), fused=True, **common), "fused"
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device here
            pass
    return torch.optim.AdamW(groups(), foreach=True, **common), "foreach"


def held_mb(model: torch.nn.Module, optimizer) -> float:
    """MiB of parameters and optimizer state this process holds between steps (its shards under
    strategy=fsdp); gradients, during a step, take as much again as the parameters."""
    tensors = list(model.parameters())
    for part in parts_of(optimizer).values():
        tensors += [v for state in part.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]  # a DTensor's own shard
    return sum(t.numel() * t.element_size() for t in local) / 2**20


def optimizer_name(train, kind: str) -> str:
    """The optimizer in words, for the run's description: 'AdamW fused', 'Muon + AdamW foreach'."""
    return f"{'Muon + ' if train.optimizer == 'muon' else ''}AdamW {kind}"


def set_lr(optimizer, lr: float) -> None:
    """Every group's learning rate for a step at lr: lr times the group's lr_scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


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
