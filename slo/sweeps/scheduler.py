"""Running a sweep's trials: each one ``slo train --trial NAME`` in its own process and folder.

At most ``jobs`` trials run at once; on a machine with GPUs each gets its own
device(s) (``CUDA_VISIBLE_DEVICES``), on a CPU the cores are shared out
(``OMP_NUM_THREADS``). A trial's output goes to ``train.log`` in its folder;
what happened to it goes to the manifest (``slo.sweeps.manifest``) as soon as
it happens, so a killed sweep leaves a true record, and the next ``slo sweep``
of the same definition skips what is finished and resumes what is not from
its checkpoint. Successive halving trains every trial to the first rung's
step count (``stop_iter``), then resumes the best ``1/halving`` to the next.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RunError
from ..outdir.files import CHECKPOINT_NAME, METRICS_NAME, SHARDED_NAME, finite, is_task_metric, read_records
from ..ranking import Ranking
from .manifest import Manifest, TrialRecord, write_manifest

LOG_NAME = "train.log"  # a trial's console output, in its folder
POLL_S = 0.2
STOPPED = {128 + signal.SIGINT, 128 + signal.SIGTERM}


@dataclass
class Job:
    record: TrialRecord
    process: subprocess.Popen
    devices: list[str]
    target: int
    started: float = field(default_factory=time.monotonic)


class Scheduler:
    """Runs the trials of one rung, jobs at a time, and records each outcome in the manifest."""

    def __init__(self, folder: Path, manifest: Manifest, command: list[str], jobs: int, devices: list[str],
                 per_trial: int, say=print):
        self.folder, self.manifest, self.command = folder, manifest, command
        self.jobs, self.free, self.per_trial = jobs, list(devices), per_trial
        self.gpus = bool(devices)
        self.say = say
        self.running: list[Job] = []
        self.stop_signal: int | None = None

    # ---- one rung ---------------------------------------------------------

    def run(self, todo: list[tuple[TrialRecord, int]]) -> None:
        """Train each (record, target step) of todo; returns when all ended, or raises KeyboardInterrupt
        once the running trials have saved and stopped after a stop signal."""
        queue = list(todo)
        total = len(queue)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while queue or self.running:
                while queue and len(self.running) < self.jobs and self.stop_signal is None:
                    record, target = queue.pop(0)
                    self._start(record, target, total - len(queue), total)
                self._reap()
                if self.stop_signal is not None and not self.running:
                    raise KeyboardInterrupt
                time.sleep(POLL_S)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum, frame) -> None:
        """Forwarded to the trials (each in its own process group, so a terminal's Ctrl-C reaches them
        only through here, once): they save and stop; a second Ctrl-C stops them at once."""
        first = self.stop_signal is None
        self.stop_signal = signum
        for job in self.running:
            if job.process.poll() is None:
                job.process.send_signal(signum)
        if first:
            self.say(f"{signal.Signals(signum).name}: the running trials save and stop; slo sweep again resumes them")

    def _start(self, record: TrialRecord, target: int, n: int, total: int) -> None:
        trial_dir = self.folder / record.name
        saved = (trial_dir / CHECKPOINT_NAME).is_file() or (trial_dir / SHARDED_NAME).is_dir()
        resume = saved and record.status != "pending"
        args = self.command + ["--trial", record.name] + (["--init_from=resume"] if resume else [])
        if target < record_max_iters(self.manifest, record):
            args.append(f"--stop_iter={target}")
        devices = [self.free.pop(0) for _ in range(self.per_trial)] if self.gpus else []
        env = dict(os.environ)
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        elif "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(self.threads())
        try:
            trial_dir.mkdir(parents=True, exist_ok=True)
            log = open(trial_dir / LOG_NAME, "ab" if resume else "wb")
        except OSError as e:
            raise RunError(f"cannot write the trial folder {trial_dir}: {e.strerror or e}") from None
        with log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, process_group=0, preexec_fn=_die_with_parent)
        self.running.append(Job(record, process, devices, target))
        record.status, record.error = "running", None
        self._save()
        how = f"resumed at iter {_checkpoint_iter(trial_dir)}" if resume else "started"
        on = f" on cuda:{','.join(devices)}" if devices else ""
        self.say(f"[{n}/{total}] {record.name}: {how}{on}, to iter {target} (log: {trial_dir / LOG_NAME})")

    def threads(self) -> int:
        from ..runner.prepare.encode import usable_cpus

        return max(1, usable_cpus() // self.jobs)

    def _reap(self) -> None:
        for job in [j for j in self.running if j.process.poll() is not None]:
            self.running.remove(job)
            self.free += job.devices
            self._record(job, job.process.returncode)

    def _record(self, job: Job, code: int) -> None:
        record, trial_dir = job.record, self.folder / job.record.name
        ranking = self.manifest.ranking
        progress = read_progress(trial_dir / METRICS_NAME, job.target, ranking)
        record.best_val_loss, record.iters, record.score = progress.best_val_loss, progress.iters, progress.score
        iters, seconds = progress.iters, time.monotonic() - job.started
        if code == 0 and iters is not None and iters >= job.target:
            record.rung += 1
            record.status = "finished" if job.target >= record_max_iters(self.manifest, record) else "stopped"
            shown = ranking.metric.replace("_", " ") if ranking.task is None else ranking.metric
            self.say(f"  {record.name}: {'finished' if record.status == 'finished' else 'reached'} iter {iters}, "
                     f"{shown} {_loss(progress.at_target)} ({seconds:.0f} s)")
        elif code in STOPPED or self.stop_signal is not None:
            record.status = "stopped"
            self.say(f"  {record.name}: stopped at iter {iters if iters is not None else 0}")
        else:
            record.status, record.error = "failed", last_error(trial_dir / LOG_NAME, code)
            self.say(f"  {record.name}: failed: {record.error}")
        self._save()

    def _save(self) -> None:
        write_manifest(self.folder, self.manifest)


def record_max_iters(manifest: Manifest, record: TrialRecord) -> int:
    return manifest.definition["max_iters"][record.name]


def rung_target(max_iters: int, halving: int | None, rungs: int, rung: int) -> int:
    """The step a trial trains to in a rung: max_iters / halving^(rungs-1-rung), at least 1."""
    if not halving:
        return max_iters
    return max(1, math.ceil(max_iters / halving ** (rungs - 1 - rung)))


@dataclass(frozen=True)
class TrialProgress:
    """What a trial's metrics.jsonl says of it, up to a target step; Nones where it says nothing."""
    iters: int | None = None  # the last step reached
    best_val_loss: float | None = None
    score: float | None = None  # its score by the sweep's metric (Ranking.score)
    at_target: float | None = None  # the metric at the last evaluation at or before the target (which ranks a rung)
    val_at_target: float | None = None  # the val loss there (which breaks a tie)
    metrics: tuple = ()  # the task/metric fields its evaluations recorded


def read_progress(metrics: Path, target: int, ranking: Ranking) -> TrialProgress:
    """A trial's progress from its metrics.jsonl, its evaluations up to target, scored by ranking."""
    try:
        records = read_records(metrics)
    except OSError:
        return TrialProgress()
    evals = [r for r in records if r.get("val_loss") is not None and r["iter"] <= target]
    steps = [r["iter"] + 1 if "loss" in r and "val_loss" not in r else r["iter"] for r in records]
    return TrialProgress(max(steps, default=None), min((r["val_loss"] for r in evals), default=None),
                         ranking.score(r.get(ranking.metric) for r in evals),
                         evals[-1][ranking.metric] if evals and finite(evals[-1].get(ranking.metric)) else None,
                         evals[-1]["val_loss"] if evals else None,
                         tuple(dict.fromkeys(k for r in evals for k in r if is_task_metric(k))))


def last_error(log: Path, code: int) -> str:
    """What a failed trial said last: its ``error: ...`` line, or its exit status."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    errors = [line for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1][len("error: "):][:500]
    if code < 0:
        return f"killed by {signal.Signals(-code).name}" if -code in signal.valid_signals() else f"signal {-code}"
    tail = [line for line in lines if line.strip()]
    return f"exit status {code}" + (f": {tail[-1][:300]}" if tail else "")


def _checkpoint_iter(trial_dir: Path) -> str:
    iters = read_progress(trial_dir / METRICS_NAME, 1 << 62, Ranking()).iters
    return str(iters) if iters is not None else "its checkpoint"


def _loss(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _die_with_parent() -> None:
    """In the trial's process: a SIGTERM (save and stop) when slo sweep dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def python_command() -> list[str]:
    return [sys.executable, "-m", "slo.runner"]
