"""``slo runs [DIR]``: a table of the runs under a folder, or of a sweep's trials.

A run is a folder with metrics.jsonl or ckpt.pt: DIR itself, or a folder one
or two levels under it (hidden folders are skipped; a run's own subfolders
are not searched). A sweep folder (with sweep.json) found there has its
trials' run folders listed, and a trial shows its sweep status (pruned,
failed...). Runs that scored tasks as they trained (LOGGING eval_tasks) add a
column of each task metric's last score. When DIR itself is a sweep folder, the table is the sweep's
(slo.report.sweep_folder.format_sweep_table). Nothing here imports torch unless a
run has no metrics.jsonl or config.json and its checkpoint must be opened.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import RunError
from ..sweeps.manifest import is_sweep_dir
from .run_folder import Run, format_rows, is_run_dir, read_run, shorten
from .sweep_folder import format_sweep_table, trial_statuses

SEARCH_DEPTH = 2
SORT_KEYS = ("updated", "name", "loss")
STATUS_ORDER = {"running": 0, "resumable": 1, "crashed": 2, "finished": 3}
MAX_CONFIG_WIDTH = 48


def find_run_dirs(folder: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """folder when it is a run, else the runs up to ``depth`` levels below it, by path; a sweep
    folder's trials (one level below it) are found wherever the sweep folder is."""
    if is_run_dir(folder):
        return [folder]
    if depth == 0 and is_sweep_dir(folder):
        depth = 1
    if depth == 0:
        return []
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:  # a folder we may not read
        return []
    return [run for child in children for run in find_run_dirs(child, depth - 1)]


def collect_runs(root: Path) -> list[Run]:
    """The runs under root; one that cannot be read is skipped with a note on stderr."""
    if not root.is_dir():
        raise RunError(f"{root} is not a folder; give the folder that holds the runs' out_dirs")
    runs = []
    for path in find_run_dirs(root):
        try:
            runs.append(read_run(path))
        except RunError as e:
            print(f"note: skipped {path}: {e}", file=sys.stderr)
    return runs


def sort_runs(runs: list[Run], by: str, now: float) -> list[Run]:
    """updated: newest first (running runs on top); name: by path; loss: best val loss first."""
    if by == "name":
        return sorted(runs, key=lambda r: str(r.path))
    if by == "loss":
        return sorted(runs, key=lambda r: (r.best_val_loss is None, r.best_val_loss or 0.0, str(r.path)))
    return sorted(runs, key=lambda r: (r.status(now) != "running", -r.updated, str(r.path)))


def format_table(runs: list[Run], root: Path, now: float | None = None) -> str:
    """The table of runs; a trial of a sweep shows its sweep status."""
    now = time.time() if now is None else now
    statuses = trial_statuses(runs)
    tasks = any(run.last_task_scores for run in runs)  # a column only where some run has task scores
    header = ("RUN", "CONFIG", "ITERS", "BEST VAL", "TOK/S", "STATUS", "UPDATED") + ("TASKS (LAST)",) * tasks
    rows = [header]
    for run in runs:
        rows.append((
            display_name(run.path, root),
            shorten(run.config_label(), MAX_CONFIG_WIDTH),
            run.progress,
            f"{run.best_val_loss:.4f}" if run.best_val_loss is not None else "-",
            f"{run.tokens_per_s:,.0f}" if run.tokens_per_s is not None else "-",
            statuses.get(run.path) or run.status(now),
            age(now - run.updated),
        ) + (", ".join(f"{k} {v:.4f}" for k, v in run.last_task_scores.items()) or "-",) * tasks)
    return format_rows(rows, {2, 3, 4})  # numbers right-aligned


def display_name(path: Path, root: Path) -> str:
    try:
        name = path.relative_to(root).as_posix()
    except ValueError:
        name = str(path)
    return name if name != "." else str(path)


def age(seconds: float) -> str:
    """``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def run_command(ns) -> int:
    root = Path(ns.dir)
    if is_sweep_dir(root):
        print(format_sweep_table(root))
        return 0
    runs = collect_runs(root)
    if not runs:
        print(f"no runs under {root} (a run is a folder with metrics.jsonl or ckpt.pt, "
              f"searched {SEARCH_DEPTH} levels deep)", file=sys.stderr)
        return 0
    now = time.time()
    print(format_table(sort_runs(runs, ns.sort, now), root, now))
    return 0
