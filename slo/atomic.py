"""Writing files and folders crash-safely: a complete old one or a complete new one, never half.

``replace_file`` writes a file beside its target, flushes and fsyncs it,
renames it over the target and fsyncs the folder; ``commit_file`` does the
last three for a temporary file another library wrote. ``folder_beside`` and
``replace_folder`` do the same for a folder, filled with files ``synced``.
Checkpoints, sharded checkpoints, datasets, exports, converted configs and
sweep manifests are all written through here.

Each temporary is made beside its target and named for it and for the
process writing it, ``.NAME.tmp-PID-XXXX`` (``.NAME.old-PID-XXXX`` for a
folder being replaced), so that the next writer of NAME can remove what a
killed one left without touching the work of one still running.
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


def synced(f) -> None:
    """Flush an open file and fsync it: its bytes are on the disk before it is renamed into place."""
    f.flush()
    os.fsync(f.fileno())


def fsync_dir(folder) -> None:
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


def fsync_file(path) -> None:
    """fsync a file another library wrote and closed."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def commit_file(tmp, path) -> None:
    """Put the written temporary file tmp in path's place: fsync it, rename it over path, fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def replace_file(path, write, *, mode: str = "wb", encoding: str | None = None, newline: str | None = None,
                 check=None, suffix: str = "") -> None:
    """Replace path by a file write(f) fills: a temporary beside it (what killed writers left there is
    removed first; suffix ends its name), synced, check(temporary path) called when given, renamed over
    path with path's permissions (a new file's as open() makes them), the folder synced. Whatever write
    or check raises (OSError for a full disk) leaves path as it was and no temporary behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep(path.parent, path.name)
    fd, tmp = make_file(path.parent, path.name, suffix)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as f:
            write(f)
            synced(f)
        if check is not None:
            check(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else new_file_permissions())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def new_file_permissions() -> int:
    """The permissions open() gives a new file: rw for all, less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def folder_beside(target: Path) -> Path:
    """A new temporary folder beside target, to fill and then put in its place with replace_folder
    (what killed writers of target left is removed first)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep(target.parent, target.name)
    tmp = make_dir(target.parent, target.name)
    tmp.chmod(0o755)  # mkdtemp makes it private; the folder it becomes is not
    return tmp


def replace_folder(tmp: Path, target: Path, replace: bool = True) -> bool:
    """Put the complete folder tmp where target is, by renames only: a target with files is moved aside
    first (killed between the renames, the next sweep puts it back) and then removed. False, with
    nothing moved, when target has files and replace is False."""
    if target.is_dir() and not target.is_symlink() and any(target.iterdir()):
        if not replace:
            return False
        old = make_dir(target.parent, target.name, "old")
        os.replace(target, old / target.name)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)  # replaces an empty folder
    fsync_dir(target.parent)
    return True
