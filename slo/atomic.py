"""Temporary files and folders of the writers that replace a file or folder atomically.

Each is made beside its target and named for it and for the process writing
it, ``.NAME.tmp-PID-XXXX`` (``.NAME.old-PID-XXXX`` for a folder being
replaced), so that the next writer of NAME can remove what a killed one left
without touching the work of one still running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

KINDS = ("tmp", "old")


def prefix(name: str, kind: str = "tmp") -> str:
    """The start of this process's temporary names for NAME."""
    return f".{name}.{kind}-{os.getpid()}-"


def make_dir(folder: Path, name: str, kind: str = "tmp") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix(name, kind), dir=folder))


def make_file(folder, name: str, suffix: str = "") -> tuple[int, str]:
    return tempfile.mkstemp(dir=folder, prefix=prefix(name), suffix=suffix)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def stale(folder: Path, name: str) -> list[Path]:
    """The temporary files and folders of NAME in folder whose writer is gone, .old- ones last."""
    found = []
    for kind in KINDS:
        start = f".{name}.{kind}-"
        for path in Path(folder).glob(glob_escape(start) + "*"):
            pid = path.name[len(start):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
                found.append(path)
    return found


def sweep(folder: Path, name: str) -> None:
    """Remove what killed writers of NAME left in folder. A replaced folder whose replacement never
    arrived (the writer died between the two renames) is put back first: it is the only copy."""
    target = Path(folder) / name
    for path in stale(folder, name):
        inner = path / name
        if path.name.startswith(f".{name}.old-") and inner.is_dir() and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(inner, target)
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
