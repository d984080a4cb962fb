"""One run per out_dir: an exclusive lock on ``out_dir/run.lock`` while a run trains there.

The lock is the operating system's (``flock``), so the kernel releases it when
the process ends, however it ends: a killed run never leaves a stale lock. The
file also says who holds it (pid and command), for the message a second run
gets and for ``slo runs``. No torch here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..errors import RunError
from .files import LOCK_NAME, read_json

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked there
    fcntl = None


class RunLock:
    """Held from ``acquire`` until ``release`` (or the process's end)."""

    def __init__(self, out_dir):
        self.path = Path(out_dir).expanduser() / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock, or raise RunError naming the run that holds it. Touches nothing else in out_dir."""
        if fcntl is None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunError(f"cannot write to out_dir {self.path.parent}: {e.strerror or e}; "
                           "choose a writable out_dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(f"out_dir {self.path.parent} is in use by another run ({describe(read_holder(self.path))}); "
                           "wait for it to finish or stop it, or set out_dir to another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv), "started": time.time()})
                      + "\n").encode("utf-8"))
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock
            self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_holder(path: Path) -> dict:
    """What a lock file says of its holder ({} when it says nothing readable)."""
    try:
        info = read_json(path)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe(holder: dict) -> str:
    pid, command = holder.get("pid"), holder.get("command")
    if not isinstance(pid, int):
        return "its pid is unknown"
    return f"pid {pid}: {command}" if isinstance(command, str) and command else f"pid {pid}"


def holder(out_dir) -> dict | None:
    """The holder of out_dir's run lock while a run holds it, else None."""
    path = Path(out_dir) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path)
    except OSError:
        return None
    finally:
        os.close(fd)  # a shared lock taken here ends with it
    return None
