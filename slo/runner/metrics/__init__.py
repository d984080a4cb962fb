"""What a run reports: console lines, metrics.jsonl, TensorBoard, wandb, and its throughput."""
