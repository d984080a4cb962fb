"""The training runner: model, data, optimizer and schedule, checkpoints, trainer.

Importing this package does not import torch; its modules do, when used.
"""

# The files of a run's out_dir: the trainer writes them; slo sample, runs, plot and diff read them.
CHECKPOINT_NAME = "ckpt.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_JSON = "config.json"
EXPLAIN_NAME = "config.explain.txt"
