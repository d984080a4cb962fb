"""A tiny dataset and config for training tests: seconds on a CPU, float32, no compile."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

TEXT = "".join(f"def f{i}(x):\n    return x * {i % 7} + {i % 3}\n\n" for i in range(400))


def make_dataset(data_dir: Path, name: str = "tiny", text: str = TEXT, val_fraction: float = 0.1) -> Path:
    """A byte-level dataset under data_dir/name: train.bin, val.bin (uint16) and meta.json."""
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    tokens = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    split = int(len(tokens) * (1 - val_fraction))
    tokens[:split].tofile(folder / "train.bin")
    tokens[split:].tofile(folder / "val.bin")
    (folder / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))
    return folder


def tiny_config(tmp_path: Path, out: str = "out", extra: str = "", max_iters: int = 8) -> Path:
    """A config file for a 2-layer, 32-wide model on the tiny dataset; returns its path."""
    data_dir = tmp_path / "data"
    if not (data_dir / "tiny").exists():
        make_dataset(data_dir)
    path = tmp_path / f"{out}.config"
    path.write_text(
        f"MODEL n_layer=2 n_head=2 n_embd=32 dropout=0.1\n"
        f"DATA dataset=tiny data_dir='{data_dir}' batch_size=4 block_size=16 gradient_accumulation_steps=2\n"
        f"TRAIN learning_rate=1e-2 max_iters={max_iters} seed=7\n"
        f"LR_SCHEDULE warmup_iters=2 lr_decay_iters=8 min_lr=1e-3\n"
        f"LOGGING out_dir='{tmp_path / out}' eval_interval=4 eval_iters=2 log_interval=1\n"
        f"SYSTEM device=cpu dtype=float32 compile=False\n"
        + extra
    )
    return path


def tiny_model(shape: dict, seed: int = 0, **options):
    """A GPT of shape (options set over it), its weights drawn from seed."""
    import torch

    from slo.runner.model.gpt import GPT, ModelArgs

    torch.manual_seed(seed)
    return GPT(ModelArgs(**{**shape, **options}))


def metrics(out_dir: Path) -> tuple[dict[int, float], dict[int, float]]:
    """(train loss per iter, val loss per evaluated iter) from out_dir/metrics.jsonl."""
    train, val = {}, {}
    for line in (out_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "val_loss" in rec:
            val[rec["iter"]] = rec["val_loss"]
        else:
            train[rec["iter"]] = rec["loss"]
    return train, val



def wait_for_steps(proc, out_dir: Path, steps: int, timeout: float = 120) -> None:
    """Wait until the run in proc has logged `steps` steps to out_dir/metrics.jsonl; fail the
    test (killing the run) when it ends or stalls before then."""
    deadline = time.monotonic() + timeout
    path = out_dir / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and sum('"loss"' in line for line in path.read_text().splitlines()) >= steps:
            return
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"the run did not reach {steps} steps: {proc.communicate()}")


def sigterm_after_steps(proc, out_dir: Path, steps: int, timeout: float = 120) -> tuple[str, str]:
    """SIGTERM to the run in proc once it has logged `steps` steps; its (stdout, stderr)."""
    try:
        wait_for_steps(proc, out_dir, steps, timeout)
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
