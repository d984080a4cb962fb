"""A sweep's folder: ``sweep.json``, its manifest, beside one run folder per trial.

``slo sweep`` is its only writer (it holds the folder's run lock while it runs) and
replaces the file atomically after every change, so a killed sweep leaves the
last state it reached. ``slo runs``, ``slo plot`` and ``slo diff`` read it to
name trials by their swept values. Nothing here imports torch.

The file, as JSON::

    {"format": 1,
     "definition": {...},          # what was swept, and the config every trial shares
     "trials": [{"name": "learning_rate=0.001,n_layer=2",   # also its folder's name
                 "values": {"learning_rate": 0.001, "n_layer": 2},
                 "status": "finished", "rung": 0, "error": null,
                 "best_val_loss": 1.92, "iters": 200, "score": 1.92}, ...],
     "rungs": [{"rung": 0, "max_iters": 22, "metric": "val_loss", "ranking": [[name, score], ...],
                "promoted": [name, ...]}, ...]}

``rung`` is the last rung the trial completed (-1 before its first); ``score``
its score by the metric that ranks the trials (the definition's settings'
``metric`` and ``goal``): its best val loss, or its last score of a task
(slo.ranking); a manifest written before there were scores has none.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import atomic
from ..errors import RunError
from ..outdir.files import is_number, read_json, shown
from ..ranking import Ranking
from ..trials import setting_value

MANIFEST_NAME = "sweep.json"
FORMAT = 1
# pending: not started; running: started, not ended (or its sweep was killed); stopped: a stop
# signal ended it with a checkpoint; finished: trained to its last rung's iteration; failed: it
# ended with an error; pruned: successive halving did not promote it.
STATUSES = ("pending", "running", "stopped", "finished", "failed", "pruned")


@dataclass
class TrialRecord:
    name: str
    values: dict
    status: str = "pending"
    rung: int = -1
    error: str | None = None
    best_val_loss: float | None = None
    iters: int | None = None
    score: float | None = None


@dataclass
class Manifest:
    definition: dict
    trials: list[TrialRecord]
    rungs: list[dict] = field(default_factory=list)

    @property
    def ranking(self) -> Ranking:
        return Ranking.of(self.definition.get("settings") or {})

    def trial(self, name: str) -> TrialRecord:
        return next(t for t in self.trials if t.name == name)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "definition": self.definition,
                           "trials": [asdict(t) for t in self.trials], "rungs": self.rungs}, indent=1) + "\n"


def is_sweep_dir(folder: Path) -> bool:
    return (Path(folder) / MANIFEST_NAME).is_file()


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of a sweep folder, None when it has none; RunError, saying what is wrong, when
    it cannot be read or is not one slo wrote."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as e:
        raise _damaged(path, str(e)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _damaged(path, f"it is not a format-{FORMAT} sweep manifest")
    definition, trials, rungs = data.get("definition"), data.get("trials"), data.get("rungs", [])
    if not isinstance(definition, dict) or not isinstance(trials, list) or not isinstance(rungs, list):
        raise _damaged(path, "definition, trials or rungs is missing or of the wrong type")
    problem = _ranking_problem(definition.get("settings", {}))
    if problem:
        raise _damaged(path, problem)
    records = []
    for i, t in enumerate(trials):
        problem = _trial_problem(t)
        if problem:
            raise _damaged(path, f"trial {i + 1}: {problem}")
        records.append(TrialRecord(**t))
    if not all(isinstance(r, dict) for r in rungs):
        raise _damaged(path, "a rung is not an object")
    return Manifest(definition, records, rungs)


def _ranking_problem(settings) -> str | None:
    """What is wrong with the definition's settings' metric and goal, if anything (neither is needed)."""
    if not isinstance(settings, dict):
        return "its definition's settings are not an object"
    for key in ("metric", "goal"):
        if settings.get(key) is not None:
            try:
                setting_value(key, settings[key])
            except ValueError as e:
                return f"its {key} {shown(settings[key])} {e}"
    return None


def _trial_problem(t) -> str | None:
    fields = set(TrialRecord.__dataclass_fields__)
    if not isinstance(t, dict) or set(t) not in (fields, fields - {"score"}):  # no score: written before scores
        return f"{shown(t)} is not a trial record"
    if not (isinstance(t["name"], str) and _plain_name(t["name"])):
        return f"its name {shown(t['name'])} is not a folder name"
    if not isinstance(t["values"], dict) or t["status"] not in STATUSES:
        return f"its values or status ({shown(t['status'])}) are not a trial's"
    if not (isinstance(t["rung"], int) and not isinstance(t["rung"], bool) and -1 <= t["rung"] < 1000):
        return f"its rung {shown(t['rung'])} is not a rung"
    if t["error"] is not None and not isinstance(t["error"], str):
        return "its error is not text"
    if t["best_val_loss"] is not None and not is_number(t["best_val_loss"]):
        return f"its best_val_loss {shown(t['best_val_loss'])} is not a number"
    if t.get("score") is not None and not is_number(t["score"]):
        return f"its score {shown(t['score'])} is not a number"
    if t["iters"] is not None and not (is_number(t["iters"]) and isinstance(t["iters"], int)):
        return f"its iters {shown(t['iters'])} is not an integer"
    return None


def _plain_name(name: str) -> bool:
    """A trial's folder name: one path component, not hidden, never '..'."""
    return bool(name) and "/" not in name and "\0" not in name and not name.startswith(".")


def _damaged(path: Path, why: str) -> RunError:
    return RunError(f"{path} cannot be read ({why}); it was damaged or not written by slo sweep. "
                    "Move it away to start the sweep afresh (the trials' run folders stay usable)")


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Replace folder's manifest atomically: a complete old one or a complete new one, never half."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    try:
        atomic.replace_file(path, lambda f: f.write(manifest.to_json()), mode="w", encoding="utf-8")
    except OSError as e:
        why = "the disk is full or nearly" if getattr(e, "errno", None) == 28 else (e.strerror or str(e))
        raise RunError(f"cannot write {path}: {why}; the trials' run folders are kept") from None
