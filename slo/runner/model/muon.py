"""Muon for the hidden matrices beside AdamW for the rest, stepped, saved and restored as one optimizer.

``torch.optim.Muon`` (torch 2.9 and newer) orthogonalises each update of a
2-D weight matrix by a Newton-Schulz iteration (Keller Jordan's Muon, which
modded-nanogpt trains with); it is meant for the hidden layers only, so the
embeddings, the output head, the norms and the biases keep AdamW.
``MuonWithAdamW`` holds both and answers what the trainer asks of an
optimizer: ``param_groups`` (both optimizers' groups, so the learning rate of
each is set in one loop), ``step``, ``zero_grad``, ``state_dict`` and
``load_state_dict``. A GradScaler unscales and steps it like any optimizer: it
unscales the gradients of every group, checks them, and calls ``step``, which
steps both parts.
"""

from __future__ import annotations

import torch

from ...errors import RunError

MUON_TORCH = "2.9"  # the first torch with torch.optim.Muon
PARTS = ("muon", "adamw")  # the keys of the state dict, in the order the parts step


def muon_class() -> type:
    """torch.optim.Muon, or RunError naming the torch version that has it."""
    muon = getattr(torch.optim, "Muon", None)
    if muon is None:
        raise RunError(f"optimizer=muon needs torch.optim.Muon, in torch {MUON_TORCH} or newer, and this is torch "
                       f"{torch.__version__}: pip install 'torch>={MUON_TORCH}', or set optimizer=adamw")
    return muon


class MuonWithAdamW:
    """A Muon and an AdamW over disjoint parameters, driven as one optimizer."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.parts = {"muon": muon, "adamw": adamw}

    @property
    def param_groups(self) -> list[dict]:
        """Muon's groups, then AdamW's: the groups themselves, so that setting a value sets it in the part."""
        return [group for part in self.parts.values() for group in part.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        """One step of each part. A closure is evaluated once, before the steps."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts.values():
            part.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        """{"muon": Muon's state dict, "adamw": AdamW's}."""
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        """Each part's state from a state_dict() of the same split; ValueError for any other dict
        (a single optimizer's state, such as AdamW's, included)."""
        if not isinstance(state, dict) or set(state) != set(PARTS):
            keys = ", ".join(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"it holds {keys or 'nothing'}, not the states of Muon and AdamW (muon, adamw)")
        for name, part in self.parts.items():
            part.load_state_dict(state[name])

    def __repr__(self) -> str:
        return f"MuonWithAdamW({', '.join(f'{n}: {len(p.param_groups)} groups' for n, p in self.parts.items())})"


def parts_of(optimizer) -> dict[str, torch.optim.Optimizer]:
    """The torch optimizers inside optimizer, by name: its parts, or {"": optimizer} for a plain one."""
    return dict(optimizer.parts) if isinstance(optimizer, MuonWithAdamW) else {"": optimizer}


def saved_kind(state) -> str:
    """The optimizer key's value that wrote an optimizer state dict: muon for MuonWithAdamW's (one that
    holds a Muon state, damaged or not), else adamw."""
    return "muon" if isinstance(state, dict) and "muon" in state else "adamw"
