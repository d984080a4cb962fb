"""A sweep's folder as ``slo runs``, ``slo plot`` and ``slo diff`` see it.

A sweep folder holds ``sweep.json`` (its manifest, slo.sweeps.manifest) and one
run folder per trial, named by the trial's swept values. A trial is named by
those values (``learning_rate=0.001, n_layer=2``); its status is the
manifest's, except that a trial whose run folder a live run has locked is
running. Its numbers come from its run folder when it has one, else from the
manifest. Nothing here imports torch unless a trial's checkpoint must be
opened (a folder without metrics.jsonl or config.json).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError
from ..outdir.files import shown
from ..sweeps.manifest import MANIFEST_NAME, STATUSES, Manifest, TrialRecord, is_sweep_dir, read_manifest
from ..ranking import Ranking
from ..schema import format_value
from .run_folder import Run, format_rows, is_run_dir, read_run, shorten

MAX_VALUE_WIDTH = 24  # characters of a swept value in a table cell or label
MAX_ERROR_WIDTH = 60  # characters of a failed trial's error in the table


@dataclass
class Trial:
    """One trial: its manifest record, its run folder and, when that holds a run, the run."""

    record: TrialRecord
    path: Path
    run: Run | None = None  # None before the trial has started, or when its folder cannot be read

    @property
    def status(self) -> str:
        """The manifest's status, or running while a live run holds the trial's folder."""
        return "running" if self.run is not None and self.run.locked else self.record.status

    @property
    def best_val_loss(self) -> float | None:
        best = self.run.best_val_loss if self.run is not None else None
        return best if best is not None else self.record.best_val_loss

    def score(self, ranking: Ranking) -> float | None:
        """The trial's score by ranking (Ranking.score): from its run folder when that has one, else the
        manifest's."""
        if ranking.task is None:
            return self.best_val_loss
        score = ranking.score(r.get(ranking.metric) for r in self.run.evals) if self.run is not None else None
        return score if score is not None else self.record.score

    @property
    def progress(self) -> str:
        """Iterations done (of max_iters, from the run folder when there is one), ``-`` when unknown."""
        if self.run is not None and (self.run.iters_done or self.record.iters is None):
            return self.run.progress
        return f"{self.record.iters:,}" if self.record.iters is not None else "-"

    @property
    def has_metrics(self) -> bool:
        return self.run is not None and bool(self.run.train or self.run.evals)

    def status_text(self) -> str:
        """The status, and a failed trial's error on one line, shortened: ``failed: CUDA out of memory``."""
        error = " ".join("".join(c if c.isprintable() else " " for c in self.record.error or "").split())
        if self.status != "failed" or not error:
            return self.status
        return shorten(f"failed: {error}", MAX_ERROR_WIDTH)


@dataclass
class Sweep:
    """A sweep folder: its manifest and its trials, in the manifest's order."""

    path: Path
    manifest: Manifest
    trials: list[Trial]

    @property
    def keys(self) -> list[str]:
        return swept_keys(self.manifest)

    def ranked(self) -> list[Trial]:
        """The trials, best first by the sweep's metric (a tie by best val loss); failed ones and those never
        scored last, in the manifest's order."""
        by = self.manifest.ranking

        def key(trial: Trial) -> tuple:
            return by.order(None) if trial.status == "failed" else by.order(trial.score(by), trial.best_val_loss)
        return sorted(self.trials, key=key)

    def label(self, trial: Trial) -> str:
        return values_label(trial.record.values, self.keys)


def swept_keys(manifest: Manifest) -> list[str]:
    """The keys the sweep varies: those of its trials' values, in the order they first appear."""
    keys: dict[str, None] = {}
    for record in manifest.trials:
        keys.update(dict.fromkeys(record.values))
    return list(keys)


def value_text(value) -> str:
    """A swept value as a config writes it (``0.001``, ``True``), shortened for a cell or a label."""
    text = format_value(value) if isinstance(value, (str, int, float, bool)) or value is None else shown(value)
    return shorten(text, MAX_VALUE_WIDTH)


def values_label(values: dict, keys: list[str]) -> str:
    """``learning_rate=0.001, n_layer=2``: a trial's swept values, in the sweep's key order."""
    return ", ".join(f"{key}={value_text(values[key])}" for key in keys if key in values) or "(no swept values)"


def read_sweep(folder: Path) -> Sweep:
    """The sweep in folder and its trials' runs; RunError when folder holds no sweep.json or a
    damaged one. A trial's run folder that cannot be read is left unread with a note on stderr."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise RunError(f"{folder} is not a sweep folder: it has no {MANIFEST_NAME}")
    return Sweep(folder, manifest, [_read_trial(folder, record) for record in manifest.trials])


def _read_trial(folder: Path, record: TrialRecord) -> Trial:
    trial = Trial(record, folder / record.name)
    if is_run_dir(trial.path):
        try:
            trial.run = read_run(trial.path)
        except RunError as e:
            print(f"note: trial {record.name}: {e}; its numbers are the manifest's", file=sys.stderr)
    return trial


def format_sweep_table(folder: Path) -> str:
    """The table of a sweep folder's trials, best first by the sweep's metric: one column per swept key,
    then iterations, best val loss, the last score of the task metric that ranks them (when one does), tokens/s
    and status, and a line of counts by status. RunError when folder is not a sweep folder or its
    sweep.json is damaged."""
    sweep = read_sweep(folder)
    keys, by = sweep.keys, sweep.manifest.ranking
    scored = by.task is not None
    header = (*keys, "ITERS", "BEST VAL") + (f"{by.metric} (LAST)",) * scored + ("TOK/S", "STATUS")
    rows = [header]
    for trial in sweep.ranked():
        speed = trial.run.tokens_per_s if trial.run is not None else None
        rows.append((
            *(value_text(trial.record.values[k]) if k in trial.record.values else "-" for k in keys),
            trial.progress,
            _number(trial.best_val_loss),
            *(_number(trial.score(by)),) * scored,
            f"{speed:,.0f}" if speed is not None else "-",
            trial.status_text(),
        ))
    numeric = {i for i, k in enumerate(keys) if _all_numbers(t.record.values.get(k) for t in sweep.trials)}
    right = numeric | set(range(len(keys), len(keys) + 3 + scored))
    return format_rows(rows, right) + "\n" + status_counts(sweep.trials)


def _number(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"


def _all_numbers(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)


def status_counts(trials: list[Trial]) -> str:
    """``6 trials: 3 finished, 1 failed, 2 pending`` (statuses in the manifest's order)."""
    counts = {s: sum(t.status == s for t in trials) for s in STATUSES}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return f"{len(trials)} trial{'s' * (len(trials) != 1)}" + (": " + ", ".join(parts) if parts else "")


def trial_of(path: Path) -> tuple[Path, Manifest, TrialRecord] | None:
    """(sweep folder, its manifest, the trial's record) when path is the run folder of a trial its
    parent's sweep.json lists, else None; RunError when that sweep.json is damaged."""
    path = Path(path)
    if not path.is_dir():
        return None
    parent, name = path.resolve().parent, path.resolve().name
    manifest = read_manifest(parent) if is_sweep_dir(parent) else None
    record = next((t for t in manifest.trials if t.name == name), None) if manifest else None
    return (parent, manifest, record) if record is not None else None


def shared_sweep_keys(a: Path, b: Path) -> tuple[Path, list[str]] | None:
    """(sweep folder, its swept keys) when a and b are two trials' run folders of the same sweep,
    else None; RunError when that sweep's sweep.json is damaged."""
    found = trial_of(a)
    if found is None:
        return None
    folder, manifest, record = found
    b = Path(b)
    if not b.is_dir() or b.resolve().parent != folder or b.resolve().name == record.name:
        return None
    if not any(t.name == b.resolve().name for t in manifest.trials):
        return None
    return folder, swept_keys(manifest)


def trial_statuses(runs: list[Run]) -> dict[Path, str]:
    """The sweep status of each run among runs that is a trial of a sweep (its parent's sweep.json
    lists it), for ``slo runs`` of a folder above sweeps; a damaged sweep.json gets a note on stderr
    and its trials keep their run status."""
    statuses: dict[Path, str] = {}
    manifests: dict[Path, Manifest | None] = {}
    for run in runs:
        parent, name = run.path.resolve().parent, run.path.resolve().name
        if parent not in manifests:
            try:
                manifests[parent] = read_manifest(parent) if is_sweep_dir(parent) else None
            except RunError as e:
                print(f"note: {e}", file=sys.stderr)
                manifests[parent] = None
        manifest = manifests[parent]
        record = next((t for t in manifest.trials if t.name == name), None) if manifest else None
        if record is not None:
            statuses[run.path] = Trial(record, run.path, run).status
    return statuses
