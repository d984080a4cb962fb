"""Downstream evaluation with lm-evaluation-harness (``pip install 'slo[eval]'``).

``lm.SloLM`` is the harness's ``LM`` over slo's own model and tokenizer, in
memory; ``eval_command`` is ``slo eval``, which loads a checkpoint into it and runs
the harness's tasks. Nothing here imports torch or lm_eval until it runs.
"""


def task_names(text: str) -> list[str]:
    """The names of a comma-separated list of tasks (LOGGING eval_tasks, --tasks), spaces around them dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]
