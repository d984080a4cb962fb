"""``slo sweep FILE... [--key=a,b ...] [--jobs N] [--force] [--retry]``: run a sweep's trials.

The trials come from the config's SWEEP lines and the command line's swept
``--key=a,b`` / ``--key=log(a,b)`` (``slo.trials``); all are resolved and
checked before anything runs. The sweep's folder is the config's out_dir,
one run folder per trial under it and ``sweep.json`` beside them; the
folder's run lock keeps a second ``slo sweep`` (or ``slo train``) out while
this one runs. Exit status: 0 when every trial finished (or was pruned), 1
when one failed or on a run error, 2 on a config error, 130/143 when stopped.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path

from ..command import add_trust_flags, print_warnings, split_overrides
from ..errors import ConfigError, RunError, UsageError
from ..outdir.files import METRICS_NAME
from .manifest import Manifest, TrialRecord, read_manifest, write_manifest
from ..schema import format_value
from .scheduler import Scheduler, python_command, read_progress, rung_target

MAX_CHANGES = 8  # changes of a sweep's definition named in the refusal


def add_arguments(parser: argparse.ArgumentParser, command: str = "sweep") -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="config files, merged left to right")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="trials at once: one GPU (or nproc_per_node GPUs) each, or a share of the CPU cores")
    parser.add_argument("--force", action="store_true",
                        help="run a changed sweep definition over an existing sweep folder (trials start afresh)")
    parser.add_argument("--retry", action="store_true", help="run failed trials again, from their checkpoints")
    add_trust_flags(parser)
    parser.epilog = ("Sweeps: SWEEP lines in the config, or --key=a,b,c, --key=log(a,b) | uniform(a,b) | int(a,b) "
                     "with --trials=N (random search), --halving=N [--rungs=R], --SWEEP.seed=N, --metric=TASK/METRIC "
                     "[--goal=max|min] (rank by a task's score); "
                     "other --key=value overrides apply to every trial.")


def run(ns: argparse.Namespace, rest: list[str]) -> int:
    from ..resolve import load
    from ..report.sweep_folder import format_sweep_table

    files, overrides = split_overrides(ns.files + rest)
    if ns.jobs < 1:
        raise UsageError(f"--jobs={ns.jobs}: give at least 1")
    cfg = load(*files, overrides=overrides, trust_py=ns.trust_py, trust_env=ns.trust_env, sweep=True)
    if cfg.sweep is None:
        raise ConfigError(f"{' '.join(files) or 'no config'}: nothing to sweep (no SWEEP line and no --key=a,b); "
                          "slo train runs one config")
    print_warnings(cfg)
    folder = Path(cfg["out_dir"]).expanduser()
    from ..outdir.lock import RunLock

    with RunLock(folder):
        manifest = open_manifest(folder, cfg, files, overrides, ns.force)
        devices, per_trial, jobs = placement(cfg, ns.jobs)
        trust = [flag for flag, on in (("--trust-py", ns.trust_py), ("--trust-env", ns.trust_env)) if on]
        command = python_command() + files + overrides + trust
        scheduler = Scheduler(folder, manifest, command, jobs, devices, per_trial)
        print(f"{cfg.sweep.describe()}\nin {folder}, {jobs} at a time", flush=True)
        try:
            run_rungs(scheduler, manifest, cfg.sweep.definition.settings, ns.retry)
        except KeyboardInterrupt:
            print("stopped: run the same slo sweep command again to resume", file=sys.stderr)
            return 128 + int(scheduler.stop_signal or 2)
    print(format_sweep_table(folder))
    failed = [t.name for t in manifest.trials if t.status == "failed"]
    if failed:
        print(f"error: {len(failed)} trial(s) failed ({', '.join(failed[:3])}{' ...' * (len(failed) > 3)}); "
              "their errors are in the table and their folders' train.log; --retry runs them again", file=sys.stderr)
        return 1
    return 0


# ---- the manifest -------------------------------------------------------------

def definition(cfg, files: list[str], overrides: list[str]) -> dict:
    """What the sweep is, as plain data: what is swept, the trials, and the config they share."""
    trials = cfg.sweep.trials
    first = trials[0].config.to_dict()
    swept = set(cfg.sweep.keys) | {"out_dir"}
    shared = {k: v for k, v in first.items() if k not in swept and all(t.config[k] == v for t in trials)}
    data = {**cfg.sweep.definition.describe(), "trials": [t.name for t in trials], "config": shared,
            "env": trials[0].config.env, "max_iters": {t.name: t.config["max_iters"] for t in trials},
            "command": files + overrides}
    return json.loads(json.dumps(data))  # as it reads back from sweep.json


RANKING = ("metric", "goal")  # settings that change no trial: only how they are ranked


def changes(old: dict, new: dict) -> list[str]:
    """What differs between two definitions, in words (the command that made them, and how the trials are
    ranked, aside)."""
    out = []
    for part, what in (("swept", "SWEEP {}"), ("settings", "{}"), ("config", "{}"), ("env", "ENV {}")):
        a, b = old.get(part) or {}, new.get(part) or {}
        for key in list(a) + [k for k in b if k not in a]:
            if part == "settings" and key in RANKING:
                continue
            if a.get(key, "(not set)") != b.get(key, "(not set)"):
                out.append(f"{what.format(key)}: {_text(a.get(key))} -> {_text(b.get(key))}")
    if not out and old.get("trials") != new.get("trials"):
        out.append("the trials")
    return out


def _text(value) -> str:
    return "(none)" if value is None else str(value)


def open_manifest(folder: Path, cfg, files: list[str], overrides: list[str], force: bool) -> Manifest:
    """The folder's manifest for this sweep: the one there when its definition is this one, else a new one
    (over a different one only with force, keeping nothing of it)."""
    own_folders(cfg.sweep.trials)
    new = definition(cfg, files, overrides)
    old = read_manifest(folder)
    if old is not None:
        differ = changes(old.definition, new)
        if not differ:
            before, old.definition = old.ranking, new
            if old.ranking != before:
                for record in old.trials:
                    record.score = None  # of the metric before; the next time each trial runs gives its own
                decided = f"; the {len(old.rungs)} rung(s) already ranked keep their promotions" if old.rungs else ""
                print(f"note: the trials are ranked by {old.ranking.describe()} now (they were by "
                      f"{before.describe()}){decided}", flush=True)
            return old
        if not force:
            shown = "; ".join(differ[:MAX_CHANGES]) + (f"; and {len(differ) - MAX_CHANGES} more" if
                                                       len(differ) > MAX_CHANGES else "")
            raise RunError(f"{folder} holds a different sweep ({shown}); run with --force to start this one "
                           "there (its trials start afresh), or set out_dir to another folder")
    manifest = Manifest(new, [TrialRecord(t.name, _plain(t.values)) for t in cfg.sweep.trials])
    write_manifest(folder, manifest)
    return manifest


def own_folders(trials) -> None:
    """RunError when two trials share a name or a run folder (one would train over the other)."""
    seen: dict = {}
    for trial in trials:
        for key in (("name", trial.name), ("folder", os.path.normpath(trial.config["out_dir"]))):
            other = seen.setdefault(key, trial)
            if other is not trial:
                values = [", ".join(f"{k}={format_value(v)}" for k, v in t.values.items()) for t in (other, trial)]
                raise RunError(f"the trials of {values[0]} and of {values[1]} would both run in "
                               f"{trial.config['out_dir']}: sweep values that differ in their folder names")


def _plain(values: dict) -> dict:
    return json.loads(json.dumps(values))


# ---- rungs --------------------------------------------------------------------

def run_rungs(scheduler: Scheduler, manifest: Manifest, settings: dict, retry: bool) -> None:
    """Every trial to its end; with successive halving, rung by rung, the best 1/halving promoted."""
    halving, rungs = settings["halving"], settings["rungs"] or 1
    members = list(manifest.trials)
    for rung in range(rungs):
        decided = next((r for r in manifest.rungs if r.get("rung") == rung), None)
        if decided is not None:  # ranked by an earlier slo sweep of this folder
            members = [manifest.trial(name) for name in decided["promoted"]]
            continue
        targets = {t.name: rung_target(manifest.definition["max_iters"][t.name], halving, rungs, rung)
                   for t in members}
        todo = [(t, targets[t.name]) for t in members if _due(t, rung, retry)]
        scheduler.run(todo)
        if rung == rungs - 1:
            break
        members = promote(scheduler, manifest, members, targets, rung, halving)


def _due(record: TrialRecord, rung: int, retry: bool) -> bool:
    if record.status in ("finished", "pruned") or record.rung >= rung:
        return False
    return record.status != "failed" or retry


def promote(scheduler: Scheduler, manifest: Manifest, members: list, targets: dict, rung: int,
            halving: int) -> list:
    """Rank a rung's trials by the sweep's metric (validation loss unless SWEEP metric= names a task's score)
    at its end, a tie by the val loss there; the best 1/halving go on, the rest are pruned. RunError, deciding
    nothing, when trials reached the rung but none recorded the metric there."""
    by = manifest.ranking
    scores, losses, recorded = dict.fromkeys(t.name for t in members), {}, {}
    done = [t for t in members if t.rung >= rung and t.status != "failed"]
    for t in done:
        progress = read_progress(scheduler.folder / t.name / METRICS_NAME, targets[t.name], by)
        scores[t.name], losses[t.name] = progress.at_target, progress.val_at_target
        recorded.update(dict.fromkeys(progress.metrics))
    if by.task is not None and done and all(v is None for v in scores.values()):
        raise RunError(unscored(by.metric, rung, list(recorded)))
    ranking = sorted(members, key=lambda t: by.order(scores[t.name], losses.get(t.name)))
    keep = [t for t in ranking if scores[t.name] is not None][:max(1, len(members) // halving)]
    for t in members:
        if t not in keep and t.status != "failed":
            t.status = "pruned"
    manifest.rungs.append({"rung": rung, "max_iters": max(targets.values()), "metric": by.metric,
                           "ranking": [[t.name, scores[t.name]] for t in ranking], "promoted": [t.name for t in keep]})
    write_manifest(scheduler.folder, manifest)
    scheduler.say(f"rung {rung + 1}: promoted {', '.join(t.name for t in keep) or 'none'}")
    return keep


def unscored(metric: str, rung: int, recorded: list[str]) -> str:
    """Why a rung cannot be ranked by a task's metric no trial recorded, and what to do."""
    task = metric.partition("/")[0]
    own = [m for m in recorded if m.partition("/")[0] == task]
    close = difflib.get_close_matches(metric, own, n=1, cutoff=0)
    if own:
        hint = f"the trials recorded {', '.join(own)}: set SWEEP metric={close[0]} and run slo sweep again"
    else:
        hint = (f"their evaluations recorded no {task} score ({', '.join(recorded) or 'no task scores'}); check "
                "LOGGING eval_tasks and the trials' train.log")
    return (f"rung {rung + 1} cannot be ranked by {metric}: no trial recorded it; {hint} (the trials are kept: "
            "the rung is ranked when the sweep runs again)")


# ---- devices ------------------------------------------------------------------

def placement(cfg, jobs: int) -> tuple[list[str], int, int]:
    """(CUDA devices to share out, devices per trial, trials at once): no devices on a CPU machine."""
    import os

    from ..runner.device import pick_device

    trials = cfg.sweep.trials
    if any(pick_device(t.config["device"]).type == "cuda" for t in trials):
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d for d in visible.split(",") if d] if visible else [str(i) for i in range(torch.cuda.device_count())]
        per_trial = max(t.config["nproc_per_node"] or 1 for t in trials)
        if per_trial > len(devices):
            raise RunError(f"a trial uses nproc_per_node={per_trial} GPUs but {len(devices)} are visible")
        most = len(devices) // per_trial
        if jobs > most:
            print(f"note: --jobs={jobs} but {len(devices)} GPU(s) give room for {most} trial(s) at once", flush=True)
        return devices, per_trial, min(jobs, most)
    return [], 0, jobs
