"""Resume: what a checkpoint gives back to a run continuing it exactly.

``resume`` loads a checkpoint's optimizer state (checked against this run's
optimizer and model, with this run's implementation choices), its progress,
data position, loss scaler and random states into the run's parts; of a
sharded checkpoint each rank reads its own shards of the weights too. The
weights of a whole checkpoint are loaded before, with the first weights
(slo.runner.first_weights).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from ...errors import RunError, first_line
from ...outdir.files import is_number, shown
from ..model.muon import parts_of, saved_kind
from . import sharded
from .contents import Progress, RunParts, set_rng_state


def resume(ckpt: dict, parts: RunParts, wanted: str, seed: int, say) -> Progress:
    """The progress of a checkpoint, with its optimizer state, data position, loss scaler and random states
    loaded into parts (of a sharded one, ``ckpt["sharded"]`` its folder, the weights too, each rank reading
    what it holds); wanted: this run's optimizer, seed: its seed."""
    folder = ckpt.get("sharded")
    if folder is None:
        optimizer = ckpt.get("optimizer")
        if not isinstance(optimizer, dict):
            raise _bad_field("optimizer", optimizer, "an optimizer state dict")
        saved = saved_kind(optimizer)
    else:
        saved = "adamw"  # sharded checkpoints are written under strategy=fsdp, which takes AdamW only
    if wanted != saved:
        raise RunError(f"the checkpoint's optimizer state is that of optimizer={saved} and this run has "
                       f"optimizer={wanted}: resume with optimizer={saved}, or start from its weights with a fresh "
                       "optimizer (init_from=PATH)")
    scales = [group.get("lr_scale") for group in parts.optimizer.param_groups]
    try:
        if folder is None:
            parts.group.load_optimizer(parts.optimizer, optimizer)
        else:
            _load_shards(parts, Path(folder))
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as e:
        raise RunError(f"the checkpoint's optimizer state does not fit this model ({first_line(e)}); "
                       "start with init_from=scratch, or finetune with init_from=PATH") from None
    _own_implementation(parts.optimizer, scales)
    problem = _optimizer_problem(parts.optimizer)
    if problem:
        raise RunError(f"the checkpoint's optimizer state is damaged ({problem}); resume from another checkpoint, "
                       "or finetune from its weights with init_from=PATH")
    iter_num = _count(ckpt, "iter_num", 0)
    progress = Progress(
        iter_num=iter_num,
        best_val_loss=_number(ckpt, "best_val_loss", math.inf),
        last_eval_iter=_count(ckpt, "last_eval_iter", -1, least=-1),
        elapsed=_number(ckpt, "elapsed", 0.0),
        last_saved_iter=iter_num,
    )
    if ckpt.get("scaler") and parts.scaler.is_enabled():
        parts.scaler.load_state_dict(ckpt["scaler"])
    own = _own_rank_state(parts, ckpt, iter_num, say)
    if own is None:  # another number of ranks: each one's streams begin afresh, from the step reached
        parts.batches.restart(iter_num)
        seed = int(np.random.SeedSequence([seed, parts.rank, iter_num]).generate_state(1)[0])
        torch.manual_seed(seed)
        random.seed(seed)
        return progress
    if "data" in own:
        parts.batches.load_state_dict(own["data"])
    if "rng" in own:
        set_rng_state(own["rng"])
    return progress


def _load_shards(parts: RunParts, folder: Path) -> None:
    """A sharded checkpoint's weights and optimizer state into this rank's model and optimizer."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    state = sharded.tensors(parts.model, parts.optimizer)
    sharded.load(folder, state)
    set_model_state_dict(parts.model, state["model"])
    set_optimizer_state_dict(parts.model, parts.optimizer, state["optimizer"])


# How a step is computed (kernels, and variants slo never uses), as opposed to the hyperparameters:
# this run's choice, never the file's (a checkpoint from another machine, or a damaged one, would
# otherwise ask for a fused kernel with differentiable=True, or to maximize the loss). Muon's
# Newton-Schulz iteration and its Nesterov momentum are slo's choice too, not keys of a config.
_IMPLEMENTATION = ("foreach", "fused", "differentiable", "capturable", "maximize", "amsgrad")
_OWN_CHOICES = {"Muon": ("nesterov", "ns_coefficients", "ns_steps", "eps", "adjust_lr_fn")}


def _own_implementation(optimizer, scales: list | None = None) -> None:
    """Put this run's implementation choices back into every group of a loaded optimizer, and its
    lr_scale (scales: each group's before the load; the learning rates are the config's, as
    learning_rate is)."""
    for part in parts_of(optimizer).values():
        own = _IMPLEMENTATION + _OWN_CHOICES.get(type(part).__name__, ())
        for group in part.param_groups:
            for key in own:
                if key in part.defaults:
                    group[key] = part.defaults[key]
    for group, scale in zip(optimizer.param_groups, scales or ()):
        if scale is not None:
            group["lr_scale"] = scale


# The state a parameter holds once the optimizer has stepped it.
_OPTIMIZER_STATE = {"AdamW": ("step", "exp_avg", "exp_avg_sq"), "Adam": ("step", "exp_avg", "exp_avg_sq"),
                    "Muon": ("momentum_buffer",)}


def _optimizer_problem(optimizer) -> str | None:
    """What a loaded optimizer state lacks for its next step (torch's load_state_dict checks only
    the groups' sizes): each option of the type its default has, each parameter's state of its shape.
    For Muon beside AdamW, each part's, named."""
    for name, part in parts_of(optimizer).items():
        problem = _part_problem(part)
        if problem:
            return f"{type(part).__name__}: {problem}" if name else problem
    return None


def _part_problem(optimizer: torch.optim.Optimizer) -> str | None:
    """_optimizer_problem of one torch optimizer."""
    for i, group in enumerate(optimizer.param_groups):
        for key, default in optimizer.defaults.items():
            value = group.get(key)
            if default is not None and not isinstance(value, type(default)) and not (
                    isinstance(default, float) and is_number(value)):
                return f"group {i}'s {key} is {shown(value)}, not a {type(default).__name__}"
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state is not None and not isinstance(state, dict):
                return f"a parameter's state is {shown(state)}, not a dict"
            if not state:
                continue
            for key in _OPTIMIZER_STATE.get(type(optimizer).__name__, ()):
                value = state.get(key)
                if key == "step":
                    if not (is_number(value) or (isinstance(value, torch.Tensor) and value.numel() == 1)):
                        return f"a parameter's step is {shown(value)}"
                elif value is None:
                    return f"a parameter's {key} is missing"
                elif not isinstance(value, torch.Tensor):
                    return f"a parameter's {key} is a {type(value).__name__}, not a tensor"
                elif value.shape != p.shape or not value.is_floating_point():
                    return (f"a parameter's {key} is a {str(value.dtype).removeprefix('torch.')} tensor of shape "
                            f"{tuple(value.shape)}, for a parameter of shape {tuple(p.shape)}")
    return None


def _own_rank_state(parts: RunParts, ckpt: dict, iter_num: int, say) -> dict | None:
    """This rank's data position and random states: from ``ranks`` in a data-parallel checkpoint, else the
    top-level ones (rank 0's). None, with a note, when the checkpoint was written by another number of
    processes: the data streams are then re-derived from the seed, the rank and the step."""
    ranks = ckpt.get("ranks") or [{k: ckpt[k] for k in ("data", "rng") if k in ckpt}]
    if not isinstance(ranks, list) or not all(isinstance(r, dict) for r in ranks):
        raise _bad_field("ranks", ranks, "a list of each rank's data and random states (dicts)")
    if len(ranks) == parts.world_size:
        return ranks[parts.rank]
    say(f"note: the checkpoint was written by {len(ranks)} process(es) and this run has {parts.world_size}: "
                "the weights, optimizer state, schedule and step continue exactly, and the data order from here on "
                "differs from an uninterrupted run's (each rank's stream starts again from the seed, its rank and "
                f"iter {iter_num})")
    return None


def _bad_field(name: str, value, wanted: str) -> RunError:
    what = shown(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else type(value).__name__
    return RunError(f"the checkpoint's {name} is {what}, not {wanted}: the file is damaged or was not written "
                    "by slo; resume from another checkpoint, or start with init_from=scratch")


def _count(ckpt: dict, name: str, default: int, least: int = 0) -> int:
    """An integer field of a checkpoint (a 0-d integer tensor too), checked."""
    value = ckpt.get(name, default)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    if not (is_number(value) and isinstance(value, int) and value >= least):
        raise _bad_field(name, value, f"an integer >= {least}")
    return value


def _number(ckpt: dict, name: str, default: float) -> float:
    """A number field of a checkpoint (nanoGPT saves best_val_loss as a 0-d tensor), checked."""
    value = ckpt.get(name, default)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not is_number(value):
        raise _bad_field(name, value, "a number")
    return float(value)
