"""TensorBoard event files of a run, in ``out_dir/tensorboard/`` (``tensorboard --logdir OUT_DIR``).

The scalars are nanoGPT's wandb names: ``train/loss``, ``val/loss``,
``eval/train_loss``, ``lr``, plus ``tokens_per_s``, ``mfu``, ``memory_mb`` and
``ms_per_iter``, and the evaluations' task scores (``hellaswag/acc_norm``); the step is the record's iter. A resumed run tells
TensorBoard to drop what the first run logged from the resume iteration on
(``purge_step``), so the curves do not double back, then logs again the
evaluation at that iteration, which the resumed run does not repeat.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import RunError
from ...outdir.files import METRICS_NAME, is_task_metric, read_records

TENSORBOARD_DIR = "tensorboard"
SCALARS = frozenset({"train/loss", "val/loss", "eval/train_loss", "lr", "tokens_per_s", "mfu", "memory_mb",
                     "ms_per_iter"})


def scalar_name(key: str) -> str:
    """A record's key under nanoGPT's wandb names: train/loss, val/loss, eval/train_loss; others as they are."""
    return {"loss": "train/loss", "train_loss": "eval/train_loss", "val_loss": "val/loss"}.get(key, key)


class TensorBoardLog:
    """A SummaryWriter that keeps the scalars above and drops the others (tokens, time)."""

    def __init__(self, out_dir, resume_iter: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises it when the tensorboard package is missing
            raise RunError("tensorboard_log=True but tensorboard is not installed: pip install 'slo[tensorboard]', "
                           "or set tensorboard_log=False") from None
        self.path = Path(out_dir) / TENSORBOARD_DIR
        self.writer = SummaryWriter(log_dir=str(self.path), purge_step=resume_iter)
        if resume_iter is not None:
            self._log_again(Path(out_dir) / METRICS_NAME, resume_iter)

    def add_scalar(self, name: str, value: float, step: int) -> None:
        if name in SCALARS or is_task_metric(name):
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()

    def _log_again(self, metrics: Path, resume_iter: int) -> None:
        if not metrics.is_file():
            return
        for rec in read_records(metrics):
            if rec["iter"] == resume_iter and "val_loss" in rec:
                for key, value in rec.items():
                    if key != "iter" and isinstance(value, (int, float)):
                        self.add_scalar(scalar_name(key), value, resume_iter)
