"""Sharded checkpoints (``checkpoint_format=sharded``): torch.distributed.checkpoint folders.

``out_dir/ckpt.sharded/`` holds the weights and optimizer state as PyTorch's
Distributed Checkpoint writes them (each rank its own shards, in ``.distcp``
files beside a ``.metadata`` index), plus ``trainer.pt``: every other field
of a checkpoint, written by rank 0 with slo.runner.checkpoint.store's atomic saver.
No rank ever holds the whole model.

A save writes a new folder beside the previous one (atomic's temporary name,
which the next save sweeps away when its writer was killed), then swaps it in
with two renames: a kill at any moment leaves the previous folder whole or
the new one. Distributed Checkpoint reshards on load, so a folder written by
N ranks loads into M ranks of either strategy, or into one process.
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import warnings
from pathlib import Path

import torch

from ... import atomic
from ...errors import RunError, first_line
from .safeload import cause, refused

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
    from torch.distributed.checkpoint.api import CheckpointException

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
    except (Exception, CheckpointException) as e:  # CheckpointException, every rank's failures, is no Exception
        if master:
            shutil.rmtree(tmp, ignore_errors=True)
        e = _first_failure(e)
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
        atomic.replace_folder(new, folder)
    except OSError as e:
        raise RunError(f"could not put checkpoint {folder} in place ({e.strerror or e}); the previous one, if any, "
                       "is kept") from None


def settle(folder: Path) -> None:
    """Put back a folder whose replacement never arrived (its writer was killed between the renames)."""
    with contextlib.suppress(OSError):
        atomic.sweep(folder.parent, folder.name)


def shapes(folder: Path) -> dict[str, torch.Tensor]:
    """The model's tensors in folder as meta tensors of their shapes, read from the index alone."""
    out = {}
    for key, item in index(folder).state_dict_metadata.items():
        if key.startswith("model.") and hasattr(item, "size"):
            out[key[len("model."):]] = torch.empty(tuple(item.size), dtype=item.properties.dtype, device="meta")
    if not out:
        raise RunError(f"{folder} holds no weights (its index lists none): it is not a sharded checkpoint of slo; "
                       "point init_from or the command at another checkpoint")
    return out


def index(folder: Path):
    """Distributed Checkpoint's index of folder, once each file it names is found whole: a missing or
    cut shard is named before any rank reads one (every rank finds the same, so none waits on another)."""
    if not (folder / INDEX_NAME).is_file():
        raise damaged(folder, f"its index {INDEX_NAME} is missing")
    try:
        with open(folder / INDEX_NAME, "rb") as f:
            metadata = _IndexUnpickler(f).load()
        ends = {}
        for item in metadata.storage_data.values():
            ends[item.relative_path] = max(ends.get(item.relative_path, 0), item.offset + item.length)
    except Exception as e:  # what unpickling a damaged file meets
        what = refused(e)
        raise damaged(folder, f"its index {INDEX_NAME} holds a Python object ({what}) that safe loading refuses"
                      if what else f"its index {INDEX_NAME} is truncated or corrupt ({cause(e)})") from None
    for name, end in sorted(ends.items()):
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise damaged(folder, f"its index {INDEX_NAME} names a shard outside the folder ({name!r})")
        try:
            size = (folder / name).stat().st_size
        except OSError as e:
            raise damaged(folder, f"{name} is missing" if isinstance(e, FileNotFoundError) else
                          f"{name} cannot be read ({e.strerror or e})") from None
        if size < end:
            raise damaged(folder, f"{name} is cut short ({size:,} bytes, where its index needs {end:,})")
    return metadata


# What a Distributed Checkpoint index is made of. Its own reader unpickles whatever the file names, which
# could run any code; slo reads the index with these classes alone, and hands it to that reader.
_INDEX_CLASSES = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                                              "TensorStorageMetadata", "BytesStorageMetadata",
                                              "ChunkStorageMetadata", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"}, "torch.serialization": {"_get_layout"},
    "torch": {"Size"}, "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if name in _INDEX_CLASSES.get(module, ()) or (module == "torch" and isinstance(getattr(torch, name, None),
                                                                                      torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name}")


def _reader(folder: Path, metadata):
    """Distributed Checkpoint's reader of folder, given its index as slo read it."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class Reader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):  # as FileSystemReader's does, but not unpickling the file
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return Reader(folder)


def load(folder: Path, state: dict) -> None:
    """Fill state (``tensors``' dict, of this process's model and optimizer) from folder, in place;
    a collective when the process is one rank of a group."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    reader = _reader(folder, index(folder))
    try:
        with warnings.catch_warnings():  # one process reading the folder alone is what is meant
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
            dcp.load(state, checkpoint_id=folder, storage_reader=reader)
    except (Exception, CheckpointException) as e:  # a shard damaged inside, or tensors of another model
        e = _first_failure(e)
        what = refused(e)
        raise damaged(folder, f"a shard holds a Python object ({what}) that safe loading refuses" if what else
                      f"its shards do not load ({type(e).__name__}: {cause(e)[:300]})") from None


def _first_failure(e: BaseException) -> BaseException:
    """The first rank's exception inside a CheckpointException (else e); an interrupt is raised again."""
    failures = getattr(e, "failures", None)
    first = next(iter(failures.values()))[0] if isinstance(failures, dict) and failures else e
    if not isinstance(first, Exception):
        raise first
    return first


def damaged(folder: Path, what: str) -> RunError:
    """The error for a sharded checkpoint found damaged: what is wrong, why a save did not do it, what to do."""
    return RunError(f"the sharded checkpoint {folder} is damaged: {what}. A save puts its folder in place whole "
                    "and keeps no earlier one, so this one was copied in part or changed since: copy the whole "
                    "folder again from where the run saved it, or train afresh with init_from=scratch")
