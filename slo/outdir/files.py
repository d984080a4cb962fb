"""The files of a run's out_dir, and the reader of its metrics.

The trainer writes them; its sinks (metrics, TensorBoard), ``slo sample`` and
``slo runs`` / ``plot`` / ``diff`` read them. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import shutil
from pathlib import Path

from ..dump import dumps
from ..errors import RunError, first_line

CHECKPOINT_NAME = "ckpt.pt"
SHARDED_NAME = "ckpt.sharded"  # checkpoint_format=sharded: a torch.distributed.checkpoint folder
METRICS_NAME = "metrics.jsonl"
PREVIOUS_METRICS_NAME = "metrics.previous.jsonl"  # a scratch run moves an earlier run's here
CONFIG_JSON = "config.json"  # the resolved config, flat
ORIGINS_JSON = "config.origins.json"  # where each value came from (slo.Config.origins)
EXPLAIN_NAME = "config.explain.txt"  # the same, for people
LOCK_NAME = "run.lock"  # held by the run training there (slo.outdir.lock)
META_NAME = "meta.json"  # the tokenizer of the run's dataset (or weights), as the dataset's meta.json


MAX_INT = 1 << 63  # an integer read back from a run's files is smaller than this in size
RECORD_NUMBERS = ("loss", "val_loss", "train_loss", "lr", "tokens_per_s", "mfu", "memory_mb", "state_mb", "ms_per_iter",
                  "time", "tokens")  # fields of a metrics record that are numbers (or null) when present
TASK_METRIC_SEP = "/"  # an evaluation's "task/metric" fields: lm-evaluation-harness scores (LOGGING eval_tasks)


def is_task_metric(key) -> bool:
    """A record's field that holds a task's score: ``hellaswag/acc_norm``."""
    return isinstance(key, str) and TASK_METRIC_SEP in key


def parse_json(text: str | bytes):
    """The value of a JSON text; ValueError, saying why, for anything that is not plain JSON
    (bad syntax or bytes, an integer past Python's digit limit, nesting past the recursion limit)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, the int-string limit
        raise ValueError(first_line(e) or type(e).__name__) from None


def read_json(path: Path):
    """parse_json of a file's contents; OSError when it cannot be read."""
    with open(path, "rb") as f:
        return parse_json(f.read())


def is_number(value) -> bool:
    """An int or float (not a bool) that converts to float."""
    if isinstance(value, bool):
        return False
    return isinstance(value, float) or (isinstance(value, int) and -MAX_INT < value < MAX_INT)


def finite(value) -> bool:
    """A number (is_number) that is neither infinite nor nan."""
    return is_number(value) and math.isfinite(value)


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
    bytes that are not JSON, or an object without an integer iter, a loss or val_loss, and numbers (its
    task/metric scores too)."""
    try:
        rec = parse_json(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not ("loss" in rec or "val_loss" in rec):
        return None
    it = rec.get("iter")
    if not (is_number(it) and isinstance(it, int) and it >= 0):
        return None
    numbers = (value for key, value in rec.items() if key in RECORD_NUMBERS or is_task_metric(key))
    return None if any(value is not None and not is_number(value) for value in numbers) else rec


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a line that is not one (as_record) is skipped."""
    records = []
    with open(path, "rb") as f:
        for line in f:
            rec = as_record(line)
            if rec is not None:
                records.append(rec)
    return records


def write_run_files(out_dir: Path, cfg, meta_file: Path, meta: dict | None) -> None:
    """The resolved config (flat JSON, its origins as JSON, explained for people) and the tokenizer's meta:
    the dataset's meta_file copied, or meta (nanoGPT's meta.pkl or an llm.c header, in slo's form) as JSON."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CONFIG_JSON).write_text(dumps(cfg, "json"), encoding="utf-8")
        (out_dir / ORIGINS_JSON).write_text(json.dumps(cfg.origins(), indent=1) + "\n", encoding="utf-8")
        (out_dir / EXPLAIN_NAME).write_text(cfg.explain() + "\n", encoding="utf-8")
        target = out_dir / META_NAME
        if meta_file.is_file():
            if not (target.exists() and target.samefile(meta_file)):  # out_dir may be the dataset's folder
                shutil.copyfile(meta_file, target)
        elif meta:
            target.write_text(json.dumps(meta) + "\n", encoding="utf-8")
    except OSError as e:
        raise RunError(f"cannot write to out_dir {out_dir}: {e}; choose a writable out_dir") from None
