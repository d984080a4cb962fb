"""Checkpoints: atomic saves, safe loads, the model they hold, and what a run keeps in them.

A checkpoint is a dict of tensors and plain Python values (nanoGPT's keys
``model``, ``optimizer``, ``model_args``, ``iter_num``, ``best_val_loss``,
``config``, plus whatever exact resume needs), so ``torch.load`` can run with
``weights_only=True``. Saving writes a temporary file beside the target,
fsyncs it and renames it over the target: a crash at any moment leaves either
the old checkpoint or the new one, never a torn file.

The trainer's policy lives here too: what a checkpoint holds
(``trainer_state``), when an evaluation saves (``save_due``), and what a
resumed run takes back from one (``load_trainer_state``: optimizer, progress,
data position, loss scaler and random states; slo.runner.pretrained decides
where a run's weights come from).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import random
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..errors import RunError, first_line
from ..schema import SCHEMA_VERSION, TRAINING_ONLY_KEYS
from .files import CHECKPOINT_NAME, is_number, shown
from .model import BYTES_TO_LOAD, GPT, ModelArgs, build_model
from .muon import parts_of, saved_kind

# prefixes torch.compile and DistributedDataParallel put before parameter names
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: temp file, flush, fsync, rename, fsync the folder."""
    path = Path(path)
    folder = path.parent
    tmp = folder / f"{atomic.prefix(path.name)}{os.urandom(4).hex()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic.sweep(folder, path.name)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise RunError(f"could not write checkpoint {path}: {_write_failure(e, folder)}. The previous checkpoint, "
                       "if any, is untouched; free some disk space or point out_dir at a writable folder") from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)


def _write_failure(e: BaseException, folder: Path) -> str:
    """What stopped a save, in words: torch's writer reports a short write ("unexpected pos ...")
    and the like without saying that the disk is full."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = first_line(e) or type(e).__name__
    if isinstance(e, RuntimeError) and re.search(r"unexpected pos|failed writing|file write failed", text):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return "the write was cut short (is the disk full?)"
        return f"the write was cut short: the disk is full or nearly ({free / 2**20:,.1f} MiB free in {folder})"
    return text


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint (a file, or a folder holding ckpt.pt) with weights_only=True.

    Missing, truncated, corrupt or foreign files raise RunError saying what to do.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT_NAME).exists():
            raise RunError(f"{path} is a folder without a {CHECKPOINT_NAME}: give a checkpoint file, or the out_dir "
                           "of a run that saved one")
        path = path / CHECKPOINT_NAME
    where = f"{path.name} in {path.parent}"
    if not path.exists():
        raise RunError(f"no checkpoint at {path}: train a model first (slo train CONFIG), "
                       "or point init_from / the sample command at an existing .pt file or out_dir")
    if not path.is_file():
        raise RunError(f"{path} is not a file; give a checkpoint file or the out_dir that holds {CHECKPOINT_NAME}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))  # "Unsupported global: GLOBAL x", "unsupported GLOBAL x whose"
        if refused:
            raise RunError(f"{where} holds a Python object ({refused.group(1)}) that safe loading refuses; "
                           "only checkpoints of tensors and plain values (dicts, lists, numbers, "
                           "strings) load: re-save it that way, or use another checkpoint") from e
        raise _corrupt(path, where, e) from e
    except PermissionError as e:
        raise RunError(f"cannot read {path}: {e}; check the file's permissions") from e
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, IndexError,
            TypeError, AttributeError, MemoryError) as e:
        raise _corrupt(path, where, e) from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        found = f"keys: {', '.join(map(str, list(ckpt)[:8]))}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise RunError(f"{where} is not a slo or nanoGPT checkpoint (no 'model' key; {found}); "
                       "point init_from or the sample command at a ckpt.pt written by training")
    return ckpt


def _corrupt(path: Path, where: str, e: BaseException) -> RunError:
    try:
        with open(path, "rb") as f:
            head = f.read(512).decode("utf-8")  # a cut multibyte character: treated as not text
        if head.strip() and all(c.isprintable() or c.isspace() for c in head):
            return RunError(f"{where} is a text file, not a PyTorch checkpoint; point init_from or the sample "
                            "command at a ckpt.pt written by training")
    except (OSError, UnicodeDecodeError):
        pass
    text = str(e)
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+)", text)  # the cause inside torch's long advice
    if unpickler:
        detail = unpickler.group(1).strip()
    else:
        detail = first_line(e) or type(e).__name__
    return RunError(f"{where} is truncated or corrupt ({detail}): was the run killed while saving, "
                    "or the file copied only in part? Delete it or point init_from at another checkpoint")


def clean_state_dict(state: dict) -> dict:
    """The model's state dict without compile/DDP prefixes and nanoGPT's causal-mask buffers."""
    if not isinstance(state, dict):
        raise RunError(f"the checkpoint's 'model' is a {type(state).__name__}, not a state dict of tensors; "
                       "use a ckpt.pt written by slo or nanoGPT")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise RunError(f"the checkpoint's model entry {key!r} is a {type(value).__name__}, not a tensor; "
                           "use a ckpt.pt written by slo or nanoGPT")
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.endswith(".attn.bias") and value.dim() == 4:  # nanoGPT's tril mask, not a weight
            continue
        out[key] = value
    return out


def model_from_checkpoint(ckpt: dict, device="cpu") -> GPT:
    """Build the checkpoint's model (from ``model_args``) and load its weights."""
    if "model_args" not in ckpt:
        raise RunError("the checkpoint has no 'model_args', so its model cannot be rebuilt; "
                       "use a ckpt.pt written by slo or nanoGPT")
    args = ModelArgs.from_dict(ckpt["model_args"])
    model = build_model(args, torch.device("cpu"), BYTES_TO_LOAD)
    state = clean_state_dict(ckpt["model"])
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                   if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            problems.append(f"{label}: {', '.join(keys[:4])}{more}")
    if problems:
        raise RunError("the checkpoint's weights do not fit its model_args (" + "; ".join(problems) +
                       "): it was made with a different model config or a different program; "
                       "use a checkpoint from the same config")
    model.load_state_dict(state)
    return model.to(device)


def check_compatible(ckpt_args: dict, args: ModelArgs, source: str = "the checkpoint") -> None:
    """RunError listing each model key where the checkpoint and the config differ
    (keys that only affect training, such as dropout, may differ)."""
    saved = ModelArgs.from_dict(ckpt_args)
    diffs = [f"{name}: checkpoint {getattr(saved, name)!r}, config {getattr(args, name)!r}"
             for name in ModelArgs.__dataclass_fields__
             if name not in TRAINING_ONLY_KEYS and getattr(saved, name) != getattr(args, name)]
    if diffs:
        raise RunError(f"{source} was made with a different model config: " + "; ".join(diffs) +
                       ". Set those keys to the checkpoint's values to resume, or start fresh with "
                       "init_from=scratch (or another out_dir)")


# ---------------------------------------------------------------- a run's checkpoints


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint."""

    iter_num: int = 0
    best_val_loss: float = math.inf
    last_eval_iter: int = -1
    elapsed: float = 0.0  # seconds of training, over every resume
    last_saved_iter: int | None = None


def trainer_state(trainer) -> dict:
    """nanoGPT's checkpoint keys, plus what an exact resume needs. Plain types and tensors only."""
    p = trainer.progress
    return {
        "model": trainer.raw_model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "model_args": trainer.args.to_dict(),
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
    """Every rank calls it (each one's data position and random states are gathered); rank 0 writes."""
    ranks = trainer.group.gather({"data": trainer.batches.state_dict(), "rng": get_rng_state()})
    if trainer.master:
        state = trainer_state(trainer)
        if trainer.world_size > 1:
            state["ranks"] = ranks
        save_checkpoint(trainer.checkpoint_path, state)
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
    """Optimizer, progress, data position, loss scaler and random states of a checkpoint."""
    optimizer = ckpt.get("optimizer")
    if not isinstance(optimizer, dict):
        raise _bad_field("optimizer", optimizer, "an optimizer state dict")
    wanted, saved = trainer.train_cfg.optimizer, saved_kind(optimizer)
    if wanted != saved:
        raise RunError(f"the checkpoint's optimizer state is that of optimizer={saved} and this run has "
                       f"optimizer={wanted}: resume with optimizer={saved}, or start from its weights with a fresh "
                       "optimizer (init_from=PATH)")
    scales = [group.get("lr_scale") for group in trainer.optimizer.param_groups]
    try:
        trainer.optimizer.load_state_dict(optimizer)
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
    own = _own_rank_state(trainer, ckpt)
    if "data" in own:
        trainer.batches.load_state_dict(own["data"])
    if ckpt.get("scaler") and trainer.scaler.is_enabled():
        trainer.scaler.load_state_dict(ckpt["scaler"])
    if "rng" in own:
        set_rng_state(own["rng"])


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


def _own_rank_state(trainer, ckpt: dict) -> dict:
    """This rank's data position and random states: from ``ranks`` in a data-parallel checkpoint,
    else the top-level ones (rank 0's). A rank the checkpoint has none for starts afresh."""
    ranks = ckpt.get("ranks") or [{k: ckpt[k] for k in ("data", "rng") if k in ckpt}]
    if not isinstance(ranks, list) or not all(isinstance(r, dict) for r in ranks):
        raise _bad_field("ranks", ranks, "a list of each rank's data and random states (dicts)")
    if len(ranks) != trainer.world_size:
        trainer.say(f"note: the checkpoint was written by {len(ranks)} process(es) and this run has "
                    f"{trainer.world_size}: the data streams of the ranks differ from an uninterrupted run's")
    return ranks[trainer.rank] if trainer.rank < len(ranks) else {}


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
