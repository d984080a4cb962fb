"""What ``torch.load(weights_only=True)`` could not read, in words a person can act on.

Safe loading builds tensors and plain values only. When a file holds anything
else, torch's message advises loading it again with ``weights_only=False``,
which runs whatever code the file carries; slo never passes that advice on.
It tells apart a file that holds other objects (``refused``: the object safe
loading would not build) from one that is truncated or corrupt (``cause``: the
reader's own words, torch's advice left out).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from ...errors import RunError

# how torch's safe unpickler names what it would not build: a global it blocks or does not allow, or a class
_REFUSED = (re.compile(r"GLOBAL ([\w.]+)"), re.compile(r"but got <class '([\w.]+)'>"))
# the lines of torch's text that advise loading unsafely, allowlisting, or reading its documentation
_ADVICE = re.compile(r"weights.only|trust|can still be loaded|Check the documentation", re.IGNORECASE)
_AFTERWORD = re.compile(r"\.? (?:Please |This is an internal |If you )")  # where torch's reason ends, its advice begins
_PREFIX = re.compile(r"^.*WeightsUnpickler error:|^Weights only load failed\.")


def refused(error: BaseException) -> str | None:
    """The object safe loading refused to build (``posix.system``); None when error is no such refusal."""
    if isinstance(error, pickle.UnpicklingError):
        for pattern in _REFUSED:
            found = pattern.search(str(error))
            if found:
                return found.group(1)
    return None


def cause(error: BaseException) -> str:
    """Why a file could not be read, in a line: the reader's own words, never torch's advice to load it
    unsafely (nor its name of the type, when it says nothing else)."""
    for line in str(error).splitlines():
        line = _PREFIX.sub("", line.strip()).strip()
        if line and not _ADVICE.search(line):
            return _AFTERWORD.split(line)[0]
    return type(error).__name__


def unreadable_weights(path: Path, error: BaseException) -> RunError:
    """The error for a Hugging Face weights file that did not load: one that holds Python objects besides
    tensors (which slo never unpickles), or one that is truncated or corrupt."""
    what = refused(error)
    if what:
        return RunError(f"{path} holds Python objects other than tensors ({what}), which slo does not load: "
                        "unpickling them could run any code. Use a safetensors copy of the weights "
                        "(model.safetensors), which holds tensors only")
    return RunError(f"{path} is truncated or corrupt ({cause(error)}): download it again")
