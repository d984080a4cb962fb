"""The collectives the trainer talks to the other ranks through, one object per kind of run.

``SingleProcessGroup`` (every collective the identity) and ``DataParallelGroup``
(strategy=ddp, in an initialized process group; slo.runner.distributed.fsdp
holds strategy=fsdp's): shard and wrap the model, say when gradients are
averaged, average the loss, agree on a stop signal, hear rank 0's evaluation,
gather each rank's data position, and the whole weights and optimizer state,
for a checkpoint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class SingleProcessGroup:
    """The collectives of a one-process run: every one is the identity."""

    world_size = 1
    shards = False  # whether each rank holds a slice of the parameters (and so every rank joins every forward)

    def shard(self, model, compile_blocks: bool) -> None:
        """Split the model's parameters across the ranks, in place (strategy=fsdp only)."""

    def wrap(self, model):
        return model

    def full_state(self, model, optimizer) -> tuple[dict, dict]:
        """(the model's state dict, the optimizer's) as one process would hold them; a collective
        where the ranks hold shards, whose result only rank 0 keeps (the others get empty dicts)."""
        return model.state_dict(), optimizer.state_dict()

    def load_optimizer(self, optimizer, state: dict) -> None:
        """Load a whole optimizer state dict (of full tensors) into this rank's optimizer."""
        optimizer.load_state_dict(state)

    def sync_gradients(self, model, sync: bool) -> None:
        pass

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def agreed_signal(self, signum: int | None) -> int | None:
        return signum

    def from_master(self, value):
        return value

    def gather(self, value) -> list:
        return [value]


class DataParallelGroup(SingleProcessGroup):
    """The collectives of one rank in an initialized process group."""

    def __init__(self, device: torch.device, find_unused_parameters: bool):
        self.world_size = dist.get_world_size()
        self.device = device
        self.find_unused_parameters = find_unused_parameters

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        # the model's only buffers are rotary tables every rank computes alike: no broadcast at each forward
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                       find_unused_parameters=self.find_unused_parameters,
                                       forward_sync_buffers=False)

    def sync_gradients(self, model, sync: bool) -> None:
        model.require_backward_grad_sync = sync  # read by DDP when the forward pass starts

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        dist.all_reduce(total)  # SUM: gloo has no AVG
        return total / self.world_size

    def agreed_signal(self, signum: int | None) -> int | None:
        flag = torch.tensor([signum or 0], dtype=torch.int64, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    def from_master(self, value):
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather(self, value) -> list:
        out = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out


def loss_scaler(device: torch.device, float16: bool, sharded: bool):
    """float16's loss scaler (disabled for other dtypes). Where the ranks hold shards, the sharded one:
    each rank sees only its slice of the gradients, so an overflow found on one is agreed by all."""
    if float16 and sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type, enabled=float16)
