"""What ranks a sweep's trials: its validation loss, or (SWEEP metric=TASK/METRIC) the score of a task
that LOGGING eval_tasks runs, lowest or highest first (SWEEP goal=). Nothing here reads files or imports
torch or lm_eval."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .evals import task_names

VAL_LOSS = "val_loss"
# lm-evaluation-harness's own metrics, by whether more is better (a metric of its filter, "exact_match,strict",
# goes by its name); another metric needs goal=
HIGHER_IS_BETTER = {"acc": True, "acc_norm": True, "acc_mutual_info": True, "acc_bytes": True, "acc_all": True,
                    "exact_match": True, "likelihood": True, "mcc": True, "f1": True, "bleu": True, "chrf": True,
                    "chrf++": True, "brier_score": False, "perplexity": False, "word_perplexity": False,
                    "byte_perplexity": False, "bits_per_byte": False, "ter": False}


def default_goal(metric: str) -> str | None:
    """min or max: which way metric is better (val_loss or TASK/METRIC) by its name; None when not known."""
    if metric == VAL_LOSS:
        return "min"
    higher = HIGHER_IS_BETTER.get(metric.partition("/")[2].partition(",")[0])
    return None if higher is None else "max" if higher else "min"


@dataclass(frozen=True)
class Ranking:
    """What ranks a sweep's trials: metric (val_loss, or an evaluation's task/metric field), lowest first
    (goal min) or highest (max)."""
    metric: str = VAL_LOSS
    goal: str = "min"

    @classmethod
    def of(cls, settings: dict) -> Ranking:
        """The ranking of a Definition's settings, or of sweep.json's (val_loss, min, where it names none)."""
        metric = settings.get("metric") or VAL_LOSS
        return cls(metric, settings.get("goal") or default_goal(metric) or "max")

    @property
    def task(self) -> str | None:
        """The evaluation task whose score ranks the trials; None for val_loss."""
        return None if self.metric == VAL_LOSS else self.metric.partition("/")[0]

    def score(self, values) -> float | None:
        """A trial's score from its evaluations' values of metric, in order (what is not a finite number left
        out): its best val loss, as slo ranks runs, or a task's last score (an early one, of a model barely
        trained, is chance); None when it has none."""
        values = [v for v in values if type(v) in (int, float) and math.isfinite(v)]
        if not values:
            return None
        return min(values) if self.task is None else values[-1]

    def order(self, value: float | None, val_loss: float | None = None) -> tuple:
        """A sort key: the best value first, None last; a tie (a task's score over a few questions often is
        one) the lower val_loss first."""
        return (value is None, 0.0 if value is None else -value if self.goal == "max" else value,
                val_loss is None, val_loss or 0.0)

    def describe(self) -> str:
        return f"{self.metric}, {'highest' if self.goal == 'max' else 'lowest'} first"


def unranked(settings: dict, trials) -> str | None:
    """The problem when the sweep ranks by a task's score but some trials do not run that task (their
    LOGGING eval_tasks leave it out), else None."""
    task = Ranking.of(settings).task
    missing = [t for t in trials if task is not None and task not in task_names(t.config["eval_tasks"])]
    if not missing:
        return None
    which = f"all {len(missing)} trials" if len(missing) == len(trials) > 1 else ", ".join(
        t.name for t in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    tasks = missing[0].config["eval_tasks"]
    return (f"metric={settings['metric']} ranks the trials by the task {task}, but LOGGING eval_tasks "
            f"(eval_tasks={tasks or chr(39) * 2}) does not run it in {which}: add {task} to eval_tasks")
