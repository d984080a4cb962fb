"""The checkpointer: when a run saves, what it writes there, and what a resumed run takes back.

``Checkpointer`` is made from the run's parts (model, optimizer, scaler, batch
stream, collectives), its checkpoint's path and format and the fields that
stay fixed for the run (the config, the model's shape, the tokenizer).
``save(progress)`` writes a checkpoint in checkpoint_format (single: the
atomic ckpt.pt of slo.runner.checkpoint.store; sharded: the folder of
slo.runner.checkpoint.sharded), ``due`` says when an evaluation saves, and
``restore(source)`` continues a run (slo.runner.checkpoint.resume) from the
first weights slo.runner.first_weights opened.
"""

from __future__ import annotations

from pathlib import Path

from ...outdir.files import CHECKPOINT_NAME, SHARDED_NAME
from . import sharded
from .contents import Progress, RunParts, get_rng_state, run_fields
from .resume import resume
from .store import latest_checkpoint, save_checkpoint


class Checkpointer:
    def __init__(self, parts: RunParts, out_dir: Path, checkpoint_format: str, *, cfg, args, meta: dict | None, say):
        self.parts, self.format = parts, checkpoint_format
        self.path = out_dir / (SHARDED_NAME if checkpoint_format == "sharded" else CHECKPOINT_NAME)
        self.cfg, self.args, self.meta, self.say = cfg, args, meta, say
        self.master = parts.rank == 0

    def state(self, progress: Progress) -> dict:
        """What a checkpoint of this run holds now. Where the ranks hold shards (strategy=fsdp) a collective
        that gathers the weights and optimizer state whole, onto rank 0 alone."""
        model, optimizer = self.parts.group.full_state(self.parts.model, self.parts.optimizer)
        return {"model": model, "optimizer": optimizer, **self._fields(progress)}

    def _fields(self, progress: Progress) -> dict:
        p = self.parts
        return run_fields(progress, args=self.args, cfg=self.cfg, meta=self.meta, batches=p.batches, scaler=p.scaler)

    def save(self, progress: Progress) -> None:
        """Every rank calls it (each one's data position and random states are gathered, and under
        strategy=fsdp each one's shards). checkpoint_format=single: rank 0 writes ckpt.pt; sharded: each
        rank writes its shards into out_dir/ckpt.sharded, rank 0 the rest. Marks progress as saved."""
        p = self.parts
        ranks = p.group.gather({"data": p.batches.state_dict(), "rng": get_rng_state()})
        fields = None
        if self.master:
            fields = self._fields(progress)
            if p.world_size > 1:
                fields["ranks"] = ranks
        if self.format == "sharded":
            sharded.save(self.path, p.model, p.optimizer, fields, p.group, save_checkpoint)
        else:
            model, optimizer = p.group.full_state(p.model, p.optimizer)
            if self.master:
                save_checkpoint(self.path, {"model": model, "optimizer": optimizer, **fields})
        progress.last_saved_iter = progress.iter_num

    def due(self, progress: Progress, improved: bool, start_iter: int, end_iter: int) -> bool:
        """Whether an evaluation saves: after this run's first step, when val loss improved or
        always_save_checkpoint, and always at a stop_iter before max_iters (where init_from=resume continues)."""
        iter_num = progress.iter_num
        early_stop = iter_num == end_iter < self.cfg.train.max_iters
        return iter_num > start_iter and (improved or self.cfg.logging.always_save_checkpoint or early_stop)

    def kept(self, progress: Progress) -> str:
        """What a run that stops on bad numbers leaves behind, in words."""
        if progress.last_saved_iter is None:
            return "No checkpoint was saved by this run."
        return f"The last good checkpoint, {self.path} (iter {progress.last_saved_iter}), is kept."

    def restore(self, source) -> Progress | None:
        """Continue a run from source (slo.runner.first_weights.Source; None: from scratch), once
        the model has its weights: the progress of a run resumed, None for a run that starts afresh."""
        if source is None:
            own = latest_checkpoint(self.path.parent)
            if own is not None and self.master and not self.cfg.train.eval_only:
                self.say(f"note: {own} exists; this run (init_from=scratch) replaces it at its first "
                         "checkpoint (init_from=resume would continue it)")
            return None
        if source.kind == "resume":
            progress = resume(source.ckpt, self.parts, self.cfg.train.optimizer, self.cfg.train.seed, self.say)
            self.say(f"resuming {source.path} at iter {progress.iter_num}")
            return progress
        since = f" (iter {source.ckpt.get('iter_num', '?')})" if source.ckpt is not None else ""
        self.say(f"starting from the weights of {source.name}{since} with a fresh optimizer, schedule and iter 0")
        return None
