"""What a run's out_dir says about it, read without torch where the files allow.

An out_dir written by the trainer holds ``metrics.jsonl`` (one JSON object per
train step logged and per evaluation), ``config.json`` (the resolved config,
flat), ``config.origins.json`` (where each value came from) and ``ckpt.pt``.
``ckpt.pt`` is opened (with torch) only when the other files are missing, as
in a nanoGPT out_dir.

A run's status, derived from those files (the trainer writes no marker):

- finished: the iterations done reached max_iters;
- running: a run holds the folder's lock (run.lock), or, when the lock cannot
  be seen, not finished and metrics.jsonl or ckpt.pt changed within the last
  ``running_window`` seconds: 120 s, or three times the longest gap between
  two logged records if that is longer (slow steps, long evaluations);
- resumable: neither, and ckpt.pt exists (``--init_from=resume`` continues it);
- crashed: neither, and there is no checkpoint to continue from.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RunError
from ..outdir.files import (CHECKPOINT_NAME, CONFIG_JSON, LOCK_NAME, METRICS_NAME, ORIGINS_JSON, finite,
                            is_number, is_task_metric, read_json, read_records)
from ..outdir.lock import holder
from ..schema import format_value

RUN_FILES = (METRICS_NAME, CHECKPOINT_NAME, LOCK_NAME)
MIN_RUNNING_WINDOW = 120.0  # seconds
RUNNING_WINDOW_GAPS = 3  # times the longest gap between records
_FILE_ORIGIN = re.compile(r"(?P<path>.+):\d+:\d+\Z")


@dataclass
class Run:
    """One out_dir: its records, resolved config and provenance, and what they add up to."""

    path: Path
    train: list[dict] = field(default_factory=list)  # records with "loss"
    evals: list[dict] = field(default_factory=list)  # records with "val_loss"
    config: dict = field(default_factory=dict)  # flat resolved values; ENV as "ENV.NAME"
    provenance: dict = field(default_factory=dict)  # key -> its origins, newest first (config.origins.json)
    checkpoint_iter: int | None = None  # only when the checkpoint had to be opened
    checkpoint_best_val: float | None = None
    updated: float = 0.0  # newest mtime of metrics.jsonl, ckpt.pt and run.lock
    locked: bool = False  # a run holds the folder's lock now

    @property
    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT_NAME).is_file()

    @property
    def max_iters(self) -> int | None:
        value = self.config.get("max_iters")
        return value if is_number(value) and isinstance(value, int) else None

    @property
    def iters_done(self) -> int:
        """Optimizer steps taken: a train record at iter k comes after step k, an evaluation at iter n after n."""
        done = [r["iter"] + 1 for r in self.train] + [r["iter"] for r in self.evals]
        if self.checkpoint_iter is not None:
            done.append(self.checkpoint_iter)
        return max(done, default=0)

    @property
    def progress(self) -> str:
        """``120/600``: iterations done of max_iters (``120`` when max_iters is unknown)."""
        return f"{self.iters_done:,}" + (f"/{self.max_iters:,}" if self.max_iters is not None else "")

    @property
    def best_val_loss(self) -> float | None:
        losses = [r["val_loss"] for r in self.evals if finite(r.get("val_loss"))]
        if losses:
            return min(losses)
        return self.checkpoint_best_val if finite(self.checkpoint_best_val) else None

    @property
    def task_metrics(self) -> list[str]:
        """The evaluations' task/metric fields (LOGGING eval_tasks), in the order they first appear."""
        return list(dict.fromkeys(k for r in self.evals for k in r if is_task_metric(k)))

    @property
    def last_task_scores(self) -> dict[str, float]:
        """Each task metric's last finite score."""
        return {k: r[k] for r in self.evals for k in r if is_task_metric(k) and finite(r[k])}

    @property
    def tokens_per_s(self) -> float | None:
        """The median of the logged throughputs (the first steps, slowed by warm-up, weigh little)."""
        values = [r["tokens_per_s"] for r in self.train if finite(r.get("tokens_per_s"))]
        return statistics.median(values) if values else None

    def running_window(self) -> float:
        times = sorted(r["time"] for r in self.train + self.evals if finite(r.get("time")))
        longest_gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
        return max(MIN_RUNNING_WINDOW, RUNNING_WINDOW_GAPS * longest_gap)

    def status(self, now: float | None = None) -> str:
        """finished, running, resumable or crashed (the module's docstring gives the rules)."""
        if self.locked:
            return "running"
        if self.max_iters is not None and self.iters_done >= self.max_iters:
            return "finished"
        now = time.time() if now is None else now
        if now - self.updated <= self.running_window():
            return "running"
        return "resumable" if self.has_checkpoint else "crashed"

    def origin(self, key: str) -> str | None:
        """Where the run's value of key came from, when its config.origins.json says."""
        chain = self.provenance.get(key)
        return chain[0] if chain else None

    def config_label(self) -> str:
        """The config file the run was started from, and its command-line overrides but out_dir:
        ``small.config --max_iters=100``."""
        parts = [name for name in [top_config_file(self.provenance)] if name]
        parts += [f"--{key}={format_value(self.config[key])}" for key, chain in self.provenance.items()
                  if chain[0] == "cli" and key != "out_dir" and key in self.config]
        return " ".join(parts) or "-"


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def read_run(path: str | os.PathLike) -> Run:
    """The run in ``path``, an out_dir (or its metrics.jsonl). RunError when it is not one."""
    path = Path(path)
    if path.is_file() and is_run_dir(path.parent):  # a file of the run: its metrics.jsonl, config.json...
        path = path.parent
    if not path.exists():
        raise RunError(f"{path} does not exist; give a run's out_dir (`slo runs` lists the runs under a folder)")
    if not is_run_dir(path):
        raise RunError(f"{path} is not a run's out_dir: it has neither {METRICS_NAME} nor {CHECKPOINT_NAME} "
                       "(`slo runs` lists the runs under a folder)")
    run = Run(path)
    metrics = path / METRICS_NAME
    if metrics.is_file():
        for rec in read_records(metrics):
            (run.evals if "val_loss" in rec else run.train).append(rec)
    run.config = read_flat_config(path / CONFIG_JSON)
    run.provenance = read_origins(path / ORIGINS_JSON)
    if not run.config or not metrics.is_file():
        try:
            _read_checkpoint(run)
        except RunError:
            if not run.train and not run.evals:
                raise  # the checkpoint was all there was to read
    run.locked = holder(path) is not None
    run.updated = max((p.stat().st_mtime for p in (path / n for n in RUN_FILES) if p.is_file()), default=0.0)
    return run


def read_flat_config(path: Path) -> dict:
    """A flat JSON object (a run's config.json), or {} when there is none."""
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise RunError(f"cannot read {path}: {e}; it should be the flat JSON config a run writes") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} is not a JSON object of config keys")
    return data


def _read_checkpoint(run: Run) -> None:
    """Iterations, best val loss and config from ckpt.pt, for out_dirs without the JSON files."""
    path = run.path / CHECKPOINT_NAME
    if not path.is_file():
        return
    from ..runner.checkpoint.store import load_checkpoint  # imports torch

    ckpt = load_checkpoint(path, map_location="cpu")
    if is_number(ckpt.get("iter_num")) and isinstance(ckpt["iter_num"], int):
        run.checkpoint_iter = ckpt["iter_num"]
    best = ckpt.get("best_val_loss")
    if hasattr(best, "numel") and best.numel() == 1:  # nanoGPT saves a 0-d tensor
        best = best.item()
    if is_number(best):
        run.checkpoint_best_val = float(best)
    if not run.config:
        run.config = checkpoint_config(ckpt) or {}


def checkpoint_config(ckpt: dict) -> dict | None:
    """The flat config a checkpoint holds (ENV as ``ENV.NAME``), or None when it holds none."""
    if not isinstance(ckpt.get("config"), dict):
        return None
    config = {k: v for k, v in ckpt["config"].items() if isinstance(k, str)}
    env = ckpt.get("env")
    if isinstance(env, dict):
        config.update({"ENV." + k: v for k, v in env.items() if isinstance(k, str)})
    return config


def read_origins(path: Path) -> dict[str, list[str]]:
    """A run's config.origins.json: key -> where its value came from, newest first (``path:line:col``,
    ``cli``, ``default``); {} when there is none, or when it is not that (a damaged file hides nothing else)."""
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items()
            if isinstance(k, str) and isinstance(v, list) and v and all(isinstance(o, str) for o in v)}


def top_config_file(provenance: dict[str, list[str]]) -> str | None:
    """The name of the config file a run was started from: of the files that set values, one that
    no other file overrides (the others are its FROM bases), and of those the one that set most."""
    final_counts: dict[str, int] = {}
    below: set[str] = set()
    for chain in provenance.values():
        files = [_origin_file(o) for o in chain if o not in ("default", "cli")]
        if files:
            final_counts[files[0]] = final_counts.get(files[0], 0) + 1
        below.update(f for f in files[1:] if f != files[0])
    top = [f for f in final_counts if f not in below] or list(final_counts)
    if not top:
        return None
    return Path(max(top, key=lambda f: (final_counts[f], f))).name


def _origin_file(origin: str) -> str:
    match = _FILE_ORIGIN.match(origin)
    return match.group("path") if match else origin


def format_rows(rows: list[tuple[str, ...]], right: set[int]) -> str:
    """Rows of cells as aligned columns two spaces apart; the columns in right (numbers) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."

