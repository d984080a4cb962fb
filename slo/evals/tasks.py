"""``TaskEvaluator``: lm-evaluation-harness's tasks (LOGGING eval_tasks) run on the model as it trains.

Rank 0 builds one before the first step, so an unknown task name, a missing
harness or a tokenizer that cannot encode fails the run at once; at an
evaluation whose iteration is a multiple of eval_tasks_interval (or the run's
last, max_iters or stop_iter) ``scores_at`` runs the tasks through ``lm.SloLM`` on slo's own model, as
``slo eval`` runs them on a checkpoint, and returns their scores flattened to
``task/metric`` keys for the evaluation's record. The run's random streams are
left as they were, and SloLM puts the model back in the mode it trained in.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ..errors import ConfigError, Diagnostic, RunError, UsageError
from ..outdir.files import is_number
from . import task_names
from .eval_command import check_task_names, quiet_harness, require_harness

KEY = "eval_tasks"
STDERR = "_stderr"  # the harness's standard errors: "acc_stderr,none"


def flat_scores(results: dict | None) -> dict[str, float]:
    """The harness's results as ``task/metric``: its "acc,none" is "acc", another filter's "exact_match,flexible"
    is "exact_match,flexible"; standard errors and whatever is not a number are left out."""
    scores = {}
    for task, metrics in ((results or {}).get("results") or {}).items():
        for key, value in metrics.items():
            metric, comma, kind = key.partition(",")
            if not comma or metric.endswith(STDERR) or not is_number(value):
                continue
            scores[f"{task}/{metric if kind == 'none' else key}"] = float(value)
    return scores


def format_scores(iter_num: int, scores: dict[str, float], seconds: float) -> str:
    """``tasks 200: hellaswag/acc 0.2850, hellaswag/acc_norm 0.2910 (41.2 s)``"""
    shown = ", ".join(f"{name} {value:.4f}" for name, value in scores.items()) or "no scores"
    return f"tasks {iter_num}: {shown} ({seconds:.1f} s)"


class TaskEvaluator:
    """The harness's tasks ``names`` (with the YAML files of ``include_path``, the first ``limit`` examples
    of each), scored on a model through ``tokenizer`` on ``device`` in ``dtype``, ``batch_size`` sequences
    per forward pass, ``eot_id`` the end-of-text token; at every ``interval``-th iteration and ``last_iter``.
    ConfigError (exit 2) for a name the harness does not know, RunError when the harness is not installed."""

    def __init__(self, names: list[str], *, include_path: str | None, limit: int | None, tokenizer, device, dtype,
                 batch_size: int, eot_id: int, interval: int, last_iter: int, say=print,
                 where: Diagnostic | None = None):
        require_harness(KEY, f", or set {KEY}=''")
        self.names, self.limit, self.interval, self.last_iter, self.say = list(names), limit, interval, last_iter, say
        self.tokenizer, self.device, self.dtype, self.batch_size, self.eot_id = tokenizer, device, dtype, batch_size, eot_id
        if include_path is not None and not Path(include_path).expanduser().is_dir():
            raise ConfigError(_at(where, f"eval_tasks_path={include_path} is not a folder (give the folder of "
                                         "the task YAML files)"))
        quiet_harness()
        from lm_eval.tasks import TaskManager

        self.manager = TaskManager(include_path=None if include_path is None else str(Path(include_path).expanduser()))
        try:
            check_task_names(self.names, self.manager.all_tasks, include_path, own_task="eval_tasks_path=DIR")
        except UsageError as e:
            raise ConfigError(_at(where, f"{KEY}: {e}")) from None

    def due(self, iter_num: int) -> bool:
        """At every interval-th iteration and this run's last (max_iters, or stop_iter: a run stopped there
        has its scores there, as its val loss, and a sweep ranks a rung's trials by them)."""
        return iter_num % self.interval == 0 or iter_num == self.last_iter

    def scores_at(self, iter_num: int, model) -> dict[str, float]:
        """The tasks' scores on model when they are due at iter_num (a line says them), else {}."""
        if not self.due(iter_num):
            return {}
        start = time.perf_counter()
        scores = self.run(model)
        self.say(format_scores(iter_num, scores, time.perf_counter() - start))
        return scores

    def run(self, model) -> dict[str, float]:
        """The tasks' ``task/metric`` scores on model (slo's GPT itself: not compiled, not wrapped in DDP)."""
        import torch
        from lm_eval import simple_evaluate

        from .eval_command import missing_dataset
        from .lm import SloLM

        lm = SloLM(model, self.tokenizer, device=self.device, batch_size=self.batch_size, dtype=self.dtype,
                   eot_id=self.eot_id)
        try:
            with kept_random_state():
                results = simple_evaluate(model=lm, tasks=self.names, limit=self.limit, task_manager=self.manager,
                                          bootstrap_iters=0, log_samples=False)
        except (ConnectionError, FileNotFoundError) as e:
            raise RunError(f"{KEY}: {missing_dataset(e)}") from None
        except torch.OutOfMemoryError:
            raise RunError(f"{KEY}: out of memory on {self.device} running the tasks {self.batch_size} sequences "
                           "at a time (the run's batch_size): lower batch_size") from None
        return flat_scores(results)

    @classmethod
    def for_run(cls, cfg, meta: dict | None, vocab_size: int, device, dtype, say,
                last_iter: int) -> TaskEvaluator | None:
        """The run's TaskEvaluator (LOGGING eval_tasks, the tokenizer of its meta; the last evaluation of this
        run at last_iter, its max_iters or stop_iter), or None when it runs none (no eval_tasks, or eval_only)."""
        log = cfg.logging
        names = task_names(log.eval_tasks)
        if not names or cfg.train.eval_only:  # eval_only: the losses alone (slo eval scores a checkpoint)
            return None
        require_harness(KEY, f", or set {KEY}=''")  # before .lm, which imports it
        from ..runner.data.text_tokenizers import Tokenizer
        from .lm import end_of_text_id

        tokenizer = Tokenizer.from_meta(meta or {})
        if not tokenizer.available:
            raise RunError(f"{KEY} needs the dataset's tokenizer to encode the tasks, but {tokenizer.why}")
        where = _origin(cfg, KEY)
        try:
            eot = end_of_text_id(tokenizer, vocab_size, meta)
        except RunError as e:
            raise RunError(f"{KEY}: {e}") from None
        return cls(names, include_path=log.eval_tasks_path, limit=log.eval_tasks_limit, tokenizer=tokenizer,
                   device=device, dtype=dtype, batch_size=cfg.data.batch_size, eot_id=eot,
                   interval=log.eval_tasks_interval or log.eval_interval, last_iter=last_iter, say=say,
                   where=where)


@contextlib.contextmanager
def kept_random_state():
    """The random streams (Python's, numpy's, torch's and CUDA's: what a checkpoint keeps) as they were
    before, after: the harness seeds them all, and the run's dropout and sampling go on as if it had not run."""
    from ..runner.checkpoint.contents import get_rng_state, set_rng_state

    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _origin(cfg, key: str) -> Diagnostic | None:
    """Where a config file set key, as a Diagnostic with no message yet (None when it was not a file)."""
    origin = cfg.origin(key)
    return Diagnostic(origin.path, origin.line, origin.col, "") if origin.kind == "file" and origin.path else None


def _at(where: Diagnostic | None, message: str) -> Diagnostic | str:
    if where is None:
        return message
    return Diagnostic(where.path, where.line, where.col, message, severity="error")
