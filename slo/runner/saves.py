"""What a run keeps in its checkpoints, when it saves, and what a resumed run takes back.

``trainer_state`` is a checkpoint's content (nanoGPT's keys plus what exact
resume needs), ``save_trainer`` writes it in the run's checkpoint_format
(slo.runner.checkpoint's atomic ckpt.pt, or slo.runner.sharded's folder),
``save_due`` says when an evaluation saves, and ``load_trainer_state`` takes
back the optimizer, progress, data position, loss scaler and random states
(slo.runner.pretrained decides where a run's weights come from).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import RunError, first_line
from ..schema import SCHEMA_VERSION
from . import sharded
from .checkpoint import save_checkpoint, saved_model_args
from .files import is_number, shown
from .muon import parts_of, saved_kind


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    iter_num: int = 0
    best_val_loss: float = math.inf
    last_eval_iter: int = -1
    elapsed: float = 0.0  # seconds of training, over every resume
    last_saved_iter: int | None = None


def trainer_state(trainer) -> dict:
    """nanoGPT's checkpoint keys, plus what an exact resume needs. Plain types and tensors only. Where the
    ranks hold shards (strategy=fsdp) a collective that gathers the weights and optimizer state whole,
    onto rank 0 alone."""
    model, optimizer = trainer.group.full_state(trainer.raw_model, trainer.optimizer)
    return {"model": model, "optimizer": optimizer, **_run_fields(trainer)}


def _run_fields(trainer) -> dict:
    """A checkpoint's fields besides the weights and the optimizer state."""
    p = trainer.progress
    return {
        "model_args": saved_model_args(trainer.args),
        "iter_num": p.iter_num,
        "best_val_loss": p.best_val_loss,
        "config": trainer.cfg.to_dict(),
        "env": trainer.cfg.env,
        "meta": trainer.dataset.meta or trainer.weights_meta,  # the tokenizer travels with the weights
        "schema_version": SCHEMA_VERSION,
        "last_eval_iter": p.last_eval_iter,
        "elapsed": p.elapsed,
        "data": trainer.batches.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler.is_enabled() else None,
        "rng": get_rng_state(),
    }


def save_trainer(trainer) -> None:
    """Every rank calls it (each one's data position and random states are gathered, and under
    strategy=fsdp each one's shards). checkpoint_format=single: rank 0 writes ckpt.pt; sharded: each
    rank writes its shards into out_dir/ckpt.sharded, rank 0 the rest."""
    ranks = trainer.group.gather({"data": trainer.batches.state_dict(), "rng": get_rng_state()})
    fields = None
    if trainer.master:
        fields = _run_fields(trainer)
        if trainer.world_size > 1:
            fields["ranks"] = ranks
    if trainer.log_cfg.checkpoint_format == "sharded":
        sharded.save(trainer.checkpoint_path, trainer.raw_model, trainer.optimizer, fields, trainer.group,
                     save_checkpoint)
    else:
        model, optimizer = trainer.group.full_state(trainer.raw_model, trainer.optimizer)
        if trainer.master:
            save_checkpoint(trainer.checkpoint_path, {"model": model, "optimizer": optimizer, **fields})
    trainer.progress.last_saved_iter = trainer.progress.iter_num


def save_due(trainer, improved: bool, start_iter: int) -> bool:
    """Whether an evaluation saves: after this run's first step, when val loss improved or always_save_checkpoint,
    and always at a stop_iter before max_iters (where init_from=resume continues)."""
    iter_num = trainer.progress.iter_num
    early_stop = iter_num == trainer.end_iter < trainer.train_cfg.max_iters
    return iter_num > start_iter and (improved or trainer.log_cfg.always_save_checkpoint or early_stop)


def kept_checkpoint(trainer) -> str:
    """What a run that stops on bad numbers leaves behind, in words."""
    saved = trainer.progress.last_saved_iter
    if saved is None:
        return "No checkpoint was saved by this run."
    return f"The last good checkpoint, {trainer.checkpoint_path} (iter {saved}), is kept."


def load_trainer_state(trainer, ckpt: dict) -> None:
    """Optimizer, progress, data position, loss scaler and random states of a checkpoint; of a
    sharded one (``ckpt["sharded"]``, its folder) the weights too, each rank reading what it holds."""
    folder = ckpt.get("sharded")
    wanted = trainer.train_cfg.optimizer
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
    scales = [group.get("lr_scale") for group in trainer.optimizer.param_groups]
    try:
        if folder is None:
            trainer.group.load_optimizer(trainer.optimizer, optimizer)
        else:
            _load_shards(trainer, Path(folder))
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as e:
        raise RunError(f"the checkpoint's optimizer state does not fit this model ({first_line(e)}); "
                       "start with init_from=scratch, or finetune with init_from=PATH") from None
    _own_implementation(trainer.optimizer, scales)
    problem = _optimizer_problem(trainer.optimizer)
    if problem:
        raise RunError(f"the checkpoint's optimizer state is damaged ({problem}); resume from another checkpoint, "
                       "or finetune from its weights with init_from=PATH")
    iter_num = _count(ckpt, "iter_num", 0)
    trainer.progress = Progress(
        iter_num=iter_num,
        best_val_loss=_number(ckpt, "best_val_loss", math.inf),
        last_eval_iter=_count(ckpt, "last_eval_iter", -1, least=-1),
        elapsed=_number(ckpt, "elapsed", 0.0),
        last_saved_iter=iter_num,
    )
    if ckpt.get("scaler") and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(ckpt["scaler"])
    own = _own_rank_state(trainer, ckpt)
    if own is None:  # another number of ranks: each one's streams begin afresh, from the step reached
        trainer.batches.restart(iter_num)
        seed = int(np.random.SeedSequence([trainer.train_cfg.seed, trainer.rank, iter_num]).generate_state(1)[0])
        torch.manual_seed(seed)
        random.seed(seed)
        return
    if "data" in own:
        trainer.batches.load_state_dict(own["data"])
    if "rng" in own:
        set_rng_state(own["rng"])


def _load_shards(trainer, folder: Path) -> None:
    """A sharded checkpoint's weights and optimizer state into this rank's model and optimizer."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    state = sharded.tensors(trainer.raw_model, trainer.optimizer)
    sharded.load(folder, state)
    set_model_state_dict(trainer.raw_model, state["model"])
    set_optimizer_state_dict(trainer.raw_model, trainer.optimizer, state["optimizer"])


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


def _own_rank_state(trainer, ckpt: dict) -> dict | None:
    """This rank's data position and random states: from ``ranks`` in a data-parallel checkpoint, else the
    top-level ones (rank 0's). None, with a note, when the checkpoint was written by another number of
    processes: the data streams are then re-derived from the seed, the rank and the step."""
    ranks = ckpt.get("ranks") or [{k: ckpt[k] for k in ("data", "rng") if k in ckpt}]
    if not isinstance(ranks, list) or not all(isinstance(r, dict) for r in ranks):
        raise _bad_field("ranks", ranks, "a list of each rank's data and random states (dicts)")
    if len(ranks) == trainer.world_size:
        return ranks[trainer.rank]
    trainer.say(f"note: the checkpoint was written by {len(ranks)} process(es) and this run has {trainer.world_size}: "
                "the weights, optimizer state, schedule and step continue exactly, and the data order from here on "
                "differs from an uninterrupted run's (each rank's stream starts again from the seed, its rank and "
                f"iter {trainer.progress.iter_num})")
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
