"""Checkpoint files: atomic saves, safe loads, and the model they hold.

A checkpoint is a dict of tensors and plain Python values (nanoGPT's keys
``model``, ``optimizer``, ``model_args``, ``iter_num``, ``best_val_loss``,
``config``, plus whatever exact resume needs), so ``torch.load`` can run with
``weights_only=True``. Saving writes a temporary file beside the target,
fsyncs it and renames it over the target (slo.atomic): a crash at any moment
leaves either the old checkpoint or the new one, never a torn file.

A checkpoint is also a sharded folder (``checkpoint_format=sharded``,
slo.runner.checkpoint.sharded), which ``load_checkpoint`` assembles whole. What a
checkpoint holds is slo.runner.checkpoint.contents's.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import torch

from ... import atomic
from ...errors import RunError, first_line
from ...schema import NANOGPT_MODEL_ARGS, TRAINING_ONLY_KEYS
from . import sharded
from ...outdir.files import CHECKPOINT_NAME, SHARDED_NAME
from ..model.gpt import BYTES_TO_LOAD, GPT, ModelArgs, build_model
from .safeload import cause, refused
from .sharded import INDEX_NAME, INFO_NAME

# prefixes torch.compile and DistributedDataParallel put before parameter names
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: temp file, flush, fsync, rename, fsync the folder."""
    path = Path(path)
    try:
        atomic.replace_file(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        raise RunError(f"could not write checkpoint {path}: {_write_failure(e, path.parent)}. The previous "
                       "checkpoint, if any, is untouched; free some disk space or point out_dir at a writable "
                       "folder") from e


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


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The checkpoint a run in out_dir saved last: its ckpt.pt or its ckpt.sharded folder (None when neither)."""
    sharded.settle(out_dir / SHARDED_NAME)
    folder = out_dir / SHARDED_NAME
    found = [path for path in (out_dir / CHECKPOINT_NAME, folder / INFO_NAME, folder / INDEX_NAME) if path.exists()]
    if not found:
        return None
    newest = max(found, key=lambda path: path.stat().st_mtime_ns)
    return folder if newest.parent == folder else newest


def checkpoint_file(path: Path) -> Path:
    """The checkpoint a path names: a file, a sharded folder, or the latest in a run's out_dir."""
    if path.is_dir() and not sharded.is_sharded(path):
        found = latest_checkpoint(path)
        if found is None:
            raise RunError(f"{path} is a folder without a {CHECKPOINT_NAME} or {SHARDED_NAME}: give a checkpoint file, "
                           "or the out_dir of a run that saved one")
        return found
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu", weights: bool = True) -> dict:
    """Read a checkpoint with weights_only=True: a file, a sharded checkpoint's folder (assembled whole in
    this process; its optimizer state stays in the folder, under ``sharded``), or a run's out_dir (the
    checkpoint it saved last). weights=False leaves a sharded checkpoint's weights unread: ``model`` holds
    meta tensors of their shapes.

    Missing, truncated, corrupt or foreign files raise RunError saying what to do.
    """
    path = checkpoint_file(Path(path))
    if path.is_dir():
        return _load_sharded(path, weights)
    ckpt = _read(path, map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        found = f"keys: {', '.join(map(str, list(ckpt)[:8]))}" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise RunError(f"{path.name} in {path.parent} is not a slo or nanoGPT checkpoint (no 'model' key; {found}); "
                       "point init_from or the sample command at a ckpt.pt written by training")
    return ckpt


def _load_sharded(folder: Path, weights: bool) -> dict:
    info = _read(folder / INFO_NAME, folder=folder)
    if not isinstance(info, dict) or not isinstance(info.get("model_args"), dict):
        raise RunError(f"{folder / INFO_NAME} is not the record of a sharded checkpoint of slo (no model_args); "
                       "resume from another checkpoint, or start with init_from=scratch")
    if not weights:
        return {**info, "model": sharded.shapes(folder), "sharded": str(folder)}
    model = build_model(ModelArgs.from_dict(info["model_args"]), torch.device("cpu"), BYTES_TO_LOAD)
    state = sharded.tensors(model)
    sharded.load(folder, state)
    return {**info, "model": state["model"], "sharded": str(folder)}


def _read(path: Path, map_location="cpu", folder: Path | None = None):
    """torch.load(path, weights_only=True), with a RunError saying what to do for a missing, truncated,
    corrupt or foreign file; folder: the sharded checkpoint whose trainer.pt path is (its errors say so)."""
    where = f"{path.name} in {path.parent}"
    if folder is not None and not path.is_file():
        raise sharded.damaged(folder, f"{path.name} is missing")
    if not path.exists():
        raise RunError(f"no checkpoint at {path}: train a model first (slo train CONFIG), "
                       "or point init_from / the sample command at an existing .pt file or out_dir")
    if not path.is_file():
        raise RunError(f"{path} is not a file; give a checkpoint file or the out_dir that holds {CHECKPOINT_NAME}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as e:
        raise RunError(f"cannot read {path}: {e}; check the file's permissions") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError,
            IndexError, TypeError, AttributeError, MemoryError) as e:
        what = refused(e)
        if folder is not None:
            raise sharded.damaged(folder, f"{path.name} holds a Python object ({what}) that safe loading refuses"
                                  if what else f"{path.name} is truncated or corrupt ({cause(e)[:300]})") from None
        if what:
            raise RunError(f"{where} holds a Python object ({what}) that safe loading refuses: slo never "
                           "unpickles one, which could run any code. Only checkpoints of tensors and plain values "
                           "(dicts, lists, numbers, strings) load: re-save it that way, or use another "
                           "checkpoint") from None
        raise _corrupt(path, where, e) from None


def _corrupt(path: Path, where: str, e: BaseException) -> RunError:
    try:
        with open(path, "rb") as f:
            head = f.read(512).decode("utf-8")  # a cut multibyte character: treated as not text
        if head.strip() and all(c.isprintable() or c.isspace() for c in head):
            return RunError(f"{where} is a text file, not a PyTorch checkpoint; point init_from or the sample "
                            "command at a ckpt.pt written by training")
    except (OSError, UnicodeDecodeError):
        pass
    return RunError(f"{where} is truncated or corrupt ({cause(e)}): was the run killed while saving, "
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


def saved_model_args(args: ModelArgs) -> dict:
    """A checkpoint's model_args: nanoGPT's keys alone when every other shape key is at its default
    (nanoGPT's ``GPTConfig(**model_args)`` then builds the model), else every key. ModelArgs.from_dict
    reads either back, the keys left out at their schema defaults."""
    short = {key: getattr(args, key) for key in NANOGPT_MODEL_ARGS}
    return short if ModelArgs(**short) == args else args.to_dict()


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
