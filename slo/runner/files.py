"""The files of a run's out_dir, and the reader of its metrics.

The trainer writes them; its sinks (metrics, TensorBoard), ``slo sample`` and
``slo runs`` / ``plot`` / ``diff`` read them. Nothing here imports torch.
"""

from __future__ import annotations

import json
import re
import reprlib
from pathlib import Path

CHECKPOINT_NAME = "ckpt.pt"
SHARDED_NAME = "ckpt.sharded"  # checkpoint_format=sharded: a torch.distributed.checkpoint folder
METRICS_NAME = "metrics.jsonl"
PREVIOUS_METRICS_NAME = "metrics.previous.jsonl"  # a scratch run moves an earlier run's here
CONFIG_JSON = "config.json"  # the resolved config, flat
ORIGINS_JSON = "config.origins.json"  # where each value came from (slo.Config.origins)
EXPLAIN_NAME = "config.explain.txt"  # the same, for people
LOCK_NAME = "run.lock"  # held by the run training there (slo.runner.lock)


MAX_INT = 1 << 63  # an integer read back from a run's files is smaller than this in size
RECORD_NUMBERS = ("loss", "val_loss", "train_loss", "lr", "tokens_per_s", "mfu", "memory_mb", "state_mb", "ms_per_iter",
                  "time", "tokens")  # fields of a metrics record that are numbers (or null) when present


def parse_json(text: str | bytes):
    """The value of a JSON text; ValueError, saying why, for anything that is not plain JSON
    (bad syntax or bytes, an integer past Python's digit limit, nesting past the recursion limit)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, the int-string limit
        raise ValueError(reason(e)) from None


def reason(error: BaseException) -> str:
    """An exception's first line, without the advice for programmers Python adds past its int-string limit."""
    text = str(error).strip()
    return text.splitlines()[0].split("; use sys.set_int_max_str_digits")[0] if text else type(error).__name__


def read_json(path: Path):
    """parse_json of a file's contents; OSError when it cannot be read."""
    with open(path, "rb") as f:
        return parse_json(f.read())


def is_number(value) -> bool:
    """An int or float (not a bool) that converts to float."""
    if isinstance(value, bool):
        return False
    return isinstance(value, float) or (isinstance(value, int) and -MAX_INT < value < MAX_INT)


def shown(value) -> str:
    """A value read from a file, as a message shows it: a repr of bounded size and depth (reprlib),
    cut to 60 characters, whatever the value (a list shared at every level, a huge integer)."""
    if isinstance(value, int) and abs(value) >= 10 ** 60:  # repr fails past Python's digit limit
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = _SHORT.repr(value)
    except (ValueError, RecursionError):  # a huge integer inside a container
        text = f"a {type(value).__name__} holding a value too large to show"
    text = re.sub(r"\s*\n\s*", " ", text)  # one line: a tensor's repr has newlines (a str's has none)
    return text if len(text) <= 60 else text[:57] + "..."


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 3, 6, 6, 6, 6
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60


def as_record(line: bytes | str) -> dict | None:
    """One metrics.jsonl line as its record, or None when it is not one: a line cut short by a kill,
    bytes that are not JSON, or an object without an integer iter, a loss or val_loss, and numbers."""
    try:
        rec = parse_json(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not ("loss" in rec or "val_loss" in rec):
        return None
    it = rec.get("iter")
    if not (is_number(it) and isinstance(it, int) and it >= 0):
        return None
    for key in RECORD_NUMBERS:
        value = rec.get(key)
        if value is not None and not is_number(value):
            return None
    return rec


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a line that is not one (as_record) is skipped."""
    records = []
    with open(path, "rb") as f:
        for line in f:
            rec = as_record(line)
            if rec is not None:
                records.append(rec)
    return records
