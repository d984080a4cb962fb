"""The built-in corpus: the Python standard library's own sources, byte-level.

Every machine that runs slo has them, so a fresh install trains without a
download. The corpus is deterministic for a given Python install: the
``.py`` files under the stdlib folder in sorted order (tests, third-party
packages and generated tables left out) up to ``MAX_BYTES``, every
``VAL_EVERY``-th file in the validation split. Another Python version gives
another corpus; meta.json records which one made it.
"""

from __future__ import annotations

import os
import platform
import sysconfig
from pathlib import Path

import numpy as np

from ...errors import RunError
from .datasets import BUILTIN, META_JSON, unigram_entropy, write_dataset

MAX_BYTES = 6_000_000
VAL_EVERY = 10
SKIPPED_DIRS = frozenset({
    "site-packages", "dist-packages", "__pycache__",  # not the standard library's own
    "test", "tests", "idle_test",  # test suites: fixtures and generated data
    "encodings", "pydoc_data",  # generated tables and one giant string
})


def stdlib_folder() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_sources(root: Path, max_bytes: int = MAX_BYTES) -> list[Path]:
    """The sorted ``.py`` files of the corpus, taken in order until ``max_bytes`` is reached.

    At least ``VAL_EVERY`` files are taken, so both splits have one.
    """
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith((".", "config-"))]
        found += [Path(folder, n) for n in names if n.endswith(".py") and not n.startswith("_sysconfigdata")]
    found.sort(key=lambda p: p.relative_to(root).as_posix())
    chosen, total = [], 0
    for path in found:
        if total >= max_bytes and len(chosen) >= VAL_EVERY:
            break
        chosen.append(path)
        total += path.stat().st_size
    return chosen


def ensure_builtin(data_dir, dataset: str) -> None:
    """Make the built-in corpus in ``{data_dir}/builtin`` when ``dataset`` is builtin and it is not there yet:
    what every opener of a training dataset calls first."""
    folder = Path(data_dir) / dataset
    if dataset != BUILTIN or any((folder / name).exists() for name in ("train.bin", "val.bin", META_JSON)):
        return
    try:
        build_builtin(folder)
    except OSError as e:
        raise RunError(
            f"the built-in corpus cannot be written to {folder} ({e}); set DATA data_dir to a writable folder"
        ) from None


def build_builtin(folder, *, max_bytes: int | None = None, replace: bool = False) -> Path:
    """Build the corpus into ``folder`` (train.bin, val.bin, meta.json) and return it.

    ``max_bytes`` None means ``MAX_BYTES``. Safe when several processes build it at once: each writes a temporary
    folder and renames it into place; the first one there wins.
    """
    root = stdlib_folder()
    files = stdlib_sources(root, max_bytes or MAX_BYTES)
    if len(files) < VAL_EVERY:
        raise RunError(
            f"the built-in corpus needs the Python standard library's sources, and {root} has only "
            f"{len(files)} .py files; use a dataset of your own (`slo prepare TEXT_FILES... -o DATA_DIR/NAME`)"
        )
    parts = {"train": [], "val": []}
    for i, path in enumerate(files):
        parts["val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"].append(path.read_bytes())
    train, val = (np.frombuffer(b"".join(parts[s]), dtype=np.uint8).astype(np.uint16) for s in ("train", "val"))
    meta = {
        "tokenizer": "byte",
        "vocab_size": 256,
        "source": f"Python standard library sources (.py) under {root}",
        "python": platform.python_version(),
        "files": {"train": len(parts["train"]), "val": len(parts["val"])},
        "tokens": {"train": len(train), "val": len(val)},
        "unigram_entropy_nats": round(unigram_entropy(train, val, 256), 4),
    }
    write_dataset(folder, train, val, meta, replace=replace)
    return Path(folder)
