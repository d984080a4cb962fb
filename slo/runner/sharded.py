"""Sharded checkpoints (``checkpoint_format=sharded``): torch.distributed.checkpoint folders.

``out_dir/ckpt.sharded/`` holds the weights and optimizer state as PyTorch's
Distributed Checkpoint writes them (each rank its own shards, in ``.distcp``
files beside a ``.metadata`` index), plus ``trainer.pt``: every other field
of a checkpoint, written by rank 0 with slo.runner.checkpoint's atomic saver.
No rank ever holds the whole model.

A save writes a new folder beside the previous one (atomic's temporary name,
which the next save sweeps away when its writer was killed), then swaps it in
with two renames: a kill at any moment leaves the previous folder whole or
the new one. Distributed Checkpoint reshards on load, so a folder written by
N ranks loads into M ranks of either strategy, or into one process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import torch

from .. import atomic
from ..errors import RunError, first_line

INFO_NAME = "trainer.pt"  # the checkpoint's fields other than the weights and optimizer state
INDEX_NAME = ".metadata"  # Distributed Checkpoint's index of the shards, written last


def is_sharded(path: Path) -> bool:
    """Whether path is a sharded checkpoint's folder."""
    return (path / INFO_NAME).is_file() or (path / INDEX_NAME).is_file()


def tensors(model, optimizer=None) -> dict:
    """What a sharded checkpoint holds, as Distributed Checkpoint saves and loads it in place: the model's
    state dict (of DTensors when sharded, else whole tensors) and the optimizer's, keyed by parameter name."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    return state


def save(folder: Path, model, optimizer, info: dict | None, group, write_info) -> None:
    """Every rank calls it: each writes its shards into a new folder (named by rank 0), rank 0 adds
    info with write_info(path, info) and swaps the folder in for the previous one."""
    import torch.distributed.checkpoint as dcp

    master = info is not None
    where = None
    if master:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            atomic.sweep(folder.parent, folder.name)
            where = str(atomic.make_dir(folder.parent, folder.name))
        except OSError as e:
            where = RunError(f"could not write checkpoint {folder}: {e.strerror or e}. The previous checkpoint, if "
                             "any, is untouched; free some disk space or point out_dir at a writable folder")
    where = group.from_master(where)
    if isinstance(where, RunError):
        raise where
    tmp = Path(where)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
            dcp.save(tensors(model, optimizer), checkpoint_id=tmp)
    except Exception as e:  # Distributed Checkpoint gathers every rank's failure into one CheckpointException
        if master:
            shutil.rmtree(tmp, ignore_errors=True)
        raise RunError(f"could not write checkpoint {folder} ({type(e).__name__}: {first_line(e)[:300]}). The "
                       "previous checkpoint, if any, is untouched; free some disk space or point out_dir at a "
                       "writable folder") from None
    if master:
        try:
            write_info(tmp / INFO_NAME, info)
            _swap_in(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap_in(new: Path, folder: Path) -> None:
    """Put the complete folder new where folder is, by renames only; the replaced one is then removed."""
    try:
        if folder.exists():
            old = atomic.make_dir(folder.parent, folder.name, "old")
            os.rename(folder, old / folder.name)  # killed here: the next sweep puts it back
            os.rename(new, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(new, folder)
    except OSError as e:
        raise RunError(f"could not put checkpoint {folder} in place ({e.strerror or e}); the previous one, if any, "
                       "is kept") from None
    with contextlib.suppress(OSError):
        fd = os.open(folder.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def settle(folder: Path) -> None:
    """Put back a folder whose replacement never arrived (its writer was killed between the renames)."""
    with contextlib.suppress(OSError):
        atomic.sweep(folder.parent, folder.name)


def shapes(folder: Path) -> dict[str, torch.Tensor]:
    """The model's tensors in folder as meta tensors of their shapes, read from the index alone."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        metadata = FileSystemReader(folder).read_metadata()
    except Exception as e:  # a missing or damaged index: the reader raises what its unpickling meets
        raise damaged(folder, e) from None
    out = {}
    for key, item in metadata.state_dict_metadata.items():
        if key.startswith("model.") and hasattr(item, "size"):
            out[key[len("model."):]] = torch.empty(tuple(item.size), dtype=item.properties.dtype, device="meta")
    if not out:
        raise RunError(f"{folder} holds no weights (its index lists none): it is not a sharded checkpoint of slo; "
                       "point init_from or the command at another checkpoint")
    return out


def load(folder: Path, state: dict) -> None:
    """Fill state (``tensors``' dict, of this process's model and optimizer) from folder, in place;
    a collective when the process is one rank of a group."""
    import torch.distributed.checkpoint as dcp

    try:
        with warnings.catch_warnings():  # one process reading the folder alone is what is meant
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
            dcp.load(state, checkpoint_id=folder)
    except Exception as e:  # a missing shard, a torn file, or tensors of another model
        raise damaged(folder, e) from None


def damaged(folder: Path, e: BaseException) -> RunError:
    return RunError(f"the sharded checkpoint {folder} cannot be read ({type(e).__name__}: {first_line(e)[:300]}): "
                    "was it copied only in part, or written by another model? Resume from another checkpoint, "
                    "or start with init_from=scratch")
