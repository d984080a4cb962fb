"""Downstream evaluation with lm-evaluation-harness (``pip install 'slo[eval]'``).

``lm.SloLM`` is the harness's ``LM`` over slo's own model and tokenizer, in
memory; ``command`` is ``slo eval``, which loads a checkpoint into it and runs
the harness's tasks. Nothing here imports torch or lm_eval until it runs.
"""
