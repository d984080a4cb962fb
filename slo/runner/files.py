"""The files of a run's out_dir, and the reader of its metrics.

The trainer writes them; its sinks (metrics, TensorBoard), ``slo sample`` and
``slo runs`` / ``plot`` / ``diff`` read them. Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path

CHECKPOINT_NAME = "ckpt.pt"
METRICS_NAME = "metrics.jsonl"
PREVIOUS_METRICS_NAME = "metrics.previous.jsonl"  # a scratch run moves an earlier run's here
CONFIG_JSON = "config.json"  # the resolved config, flat
ORIGINS_JSON = "config.origins.json"  # where each value came from (slo.Config.origins)
EXPLAIN_NAME = "config.explain.txt"  # the same, for people
LOCK_NAME = "run.lock"  # held by the run training there (slo.runner.lock)


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a line cut short by a kill, or not a record, is skipped."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("iter"), int) and ("loss" in rec or "val_loss" in rec):
                records.append(rec)
    return records
