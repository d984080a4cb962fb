"""``slo eval RUN_OR_CKPT --tasks NAMES``: lm-evaluation-harness's tasks on a checkpoint, in this process.

The checkpoint's model and tokenizer load as ``slo sample`` loads them, into
``lm.SloLM``; the harness's ``simple_evaluate`` runs the tasks (its own, and
the YAML files of ``--include_path``) and its table is printed; ``--json``
writes its results. torch and lm_eval are imported only when it runs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import re
import sys
from pathlib import Path

from ..errors import RunError, UsageError, first_line
from ..schema import KEYS
from . import task_names

DTYPES = ("float32", "bfloat16", "float16", "auto")
INSTALL = "pip install 'slo[eval]'"


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add = parser.add_argument
    add("run", metavar="RUN_OR_CKPT", help="a run's out_dir holding ckpt.pt, or a .pt file")
    add("--tasks", metavar="NAMES", required=True, help="lm-evaluation-harness task names, comma-separated")
    add("--include_path", metavar="DIR", help="a folder of task YAML files to add to the harness's own")
    add("--limit", metavar="N", type=int, help="evaluate only the first N examples of each task")
    add("--num_fewshot", metavar="K", type=int, help="examples put before each question (default: the task's)")
    add("--batch_size", metavar="B", type=int, default=16, help="sequences per forward pass (default: 16)")
    add("--device", metavar="DEVICE", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    add("--dtype", choices=DTYPES, default="float32", help="compute dtype (default: float32, as the harness's hf "
        "model runs an export)")
    add("--data_dir", metavar="DIR", help="where the run's dataset lives, for its meta.json (as slo sample)")
    add("--json", metavar="OUT", help="also write the harness's results to this JSON file")


def require_harness(needed_by: str, advice: str = "") -> None:
    """RunError, saying what to install, when lm-evaluation-harness is not there."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise RunError(f"{needed_by} needs lm-evaluation-harness: {INSTALL}{advice}") from None


def run(ns, rest) -> int:
    require_harness("slo eval")
    names = check_options(ns)
    quiet_harness()
    lm = load_lm(ns)  # first: a wrong checkpoint is said before the harness indexes its tasks
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=ns.include_path)
    check_task_names(names, manager.all_tasks, ns.include_path)
    results = evaluate(lm, ns, names, manager)
    if results is None:
        raise RunError("lm-evaluation-harness returned no results")
    from lm_eval.utils import make_table

    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    if ns.json:
        write_json(Path(ns.json), results)
    return 0


def check_options(ns) -> list[str]:
    """The task names; UsageError naming every option out of range."""
    names = task_names(ns.tasks)
    problems = [] if names else ["--tasks names no task: give one or more names, comma-separated"]
    for flag, value, least in (("limit", ns.limit, 1), ("num_fewshot", ns.num_fewshot, 0),
                               ("batch_size", ns.batch_size, 1)):
        if value is not None and value < least:
            problems.append(f"--{flag}={value} must be >= {least}")
    if not re.fullmatch(KEYS["device"].pattern, ns.device):
        problems.append(f"--device={ns.device} must be {KEYS['device'].allowed.removeprefix('one of ')}")
    if ns.include_path is not None and not Path(ns.include_path).is_dir():
        problems.append(f"--include_path {ns.include_path} is not a folder (give the folder of the task YAML files)")
    if problems:
        raise UsageError("; ".join(problems))
    return names


def quiet_harness() -> None:
    """The harness's warnings only: its info lines would bury the table."""
    logging.getLogger("lm_eval").setLevel(logging.WARNING)


def check_task_names(names: list[str], known: list[str], include_path: str | None,
                     own_task: str = "--include_path DIR") -> None:
    """UsageError for the names the harness does not know, each with the closest names it knows (and, without
    include_path, that own_task adds a task of your own)."""
    known_set = set(known)
    unknown = [name for name in names if name not in known_set]
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (closest: {', '.join(close)})" if close else ""))
    where = f"the harness's tasks and those in {include_path}" if include_path else "the harness's tasks"
    raise UsageError(f"unknown task{'s' * (len(unknown) > 1)} {'; '.join(parts)}: not among {where}"
                     + ("" if include_path else f"; a task of your own needs {own_task}"))


def load_lm(ns):
    """SloLM over the checkpoint ns.run names, loaded as slo sample loads it."""
    from ..runner.checkpoint.store import load_checkpoint, model_from_checkpoint
    from ..runner.device import pick_device, pick_dtype
    from ..runner.sample import tokenizer_for
    from .lm import SloLM, end_of_text_id

    device = pick_device(ns.device)
    dtype = pick_dtype(ns.dtype, device)
    path = Path(ns.run)
    ckpt = load_checkpoint(path)
    tokenizer = tokenizer_for(ckpt, path if path.is_dir() else path.parent, ns.data_dir)
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else None
    model = model_from_checkpoint(ckpt, device)
    del ckpt  # the weights now live in the model
    eot = end_of_text_id(tokenizer, model.args.vocab_size, meta)  # a trained BPE's from its meta
    return SloLM(model, tokenizer, device=device, batch_size=ns.batch_size, dtype=dtype, eot_id=eot)


def evaluate(lm, ns, names: list[str], manager) -> dict | None:
    """The harness's simple_evaluate of the tasks on lm; a dataset that cannot be had is one line."""
    import torch
    from lm_eval import simple_evaluate

    try:
        return simple_evaluate(model=lm, tasks=names, num_fewshot=ns.num_fewshot, limit=ns.limit,
                               task_manager=manager, log_samples=False)
    except (ConnectionError, FileNotFoundError) as e:
        raise RunError(missing_dataset(e)) from None
    except torch.OutOfMemoryError:
        raise RunError(f"out of memory on {lm.device} with --batch_size {ns.batch_size}: lower it") from None


def missing_dataset(error: BaseException) -> str:
    """One line for a dataset that is neither in the datasets cache nor reachable, or a data file not there."""
    said = first_line(error)
    quoted = re.search(r"'([^'\s]+)'", said)  # the name, not the quote of "Couldn't"
    name = quoted.group(1) if quoted else said
    if isinstance(error, ConnectionError):
        return (f"the dataset {name} is not in the Hugging Face datasets cache and cannot be downloaded ({said}): "
                "run slo eval once where the Hub is reachable (HF_DATASETS_OFFLINE and HF_HUB_OFFLINE unset), "
                "or set HF_HOME to a cache that holds it")
    return f"a dataset of the tasks is missing ({said}): check the task's dataset_path and data_files"


def write_json(out: Path, results: dict) -> None:
    """The harness's results as JSON (its samples left out; numpy values and sets as plain data)."""
    from lm_eval.utils import handle_non_serializable

    data = {key: value for key, value in results.items() if key != "samples"}
    text = json.dumps(data, indent=2, default=handle_non_serializable, ensure_ascii=False) + "\n"
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise RunError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"wrote {out}", file=sys.stderr)
