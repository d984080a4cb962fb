"""strategy=fsdp: where FSDP2 is applied, and the collectives of a rank whose model it shards.

``FsdpGroup.shard`` calls ``fully_shard`` on every block, then on the whole
model (the order PyTorch documents: each block compiled first, and activation
checkpointing inside the model's forward). Its parameters are DTensors, each
rank holding one slice; the model is used as it is, without a wrapper, and
every rank joins every forward, evaluation included.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .collectives import DataParallelGroup


class FsdpGroup(DataParallelGroup):
    """strategy=fsdp: the collectives of one rank whose model FSDP2 shards across the group."""

    shards = True

    def __init__(self, device: torch.device, ddp_cfg, dtype: torch.dtype):
        super().__init__(device, False)
        self.reshard_after_forward = ddp_cfg.fsdp_reshard_after_forward
        self.cpu_offload = ddp_cfg.fsdp_cpu_offload and device.type != "cpu"  # on the CPU there is nowhere to go
        self.dtype = dtype

    def shard(self, model, compile_blocks: bool) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

        for tensor in model.state_dict().values():  # one model, rank 0's: fully_shard keeps each rank's own slice
            dist.broadcast(tensor.detach(), src=0)
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        # parameters in the compute dtype for the forward and backward, gradients reduced in float32
        low = self.dtype if self.dtype in (torch.bfloat16, torch.float16) else None
        options = dict(mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=low, reduce_dtype=torch.float32),
                       offload_policy=CPUOffloadPolicy() if self.cpu_offload else OffloadPolicy())
        for block in model.transformer.h:
            if compile_blocks:
                block.compile()  # in place: the parameter names stay the model's
            fully_shard(block, reshard_after_forward=self.reshard_after_forward, **options)
        fully_shard(model, **options)  # the embeddings, final norm and head; the last group needs no reshard

    def wrap(self, model):
        return model

    def sync_gradients(self, model, sync: bool) -> None:
        model.set_requires_gradient_sync(sync)  # gradients reduce-scattered in the last micro-step's backward

    def full_state(self, model, optimizer) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        state = optimizer.state_dict()  # keyed by parameter index, as one process's is
        keep = dist.get_rank() == 0
        whole = {}
        for index, values in state["state"].items():  # every rank in the same order: each gather is a collective
            values = {k: _whole(v) for k, v in values.items()}
            if keep:
                whole[index] = values
        if not keep:
            return {}, {}
        return weights, {"state": whole, "param_groups": state["param_groups"]}

    def load_optimizer(self, optimizer, state: dict) -> None:
        from torch.distributed.tensor import distribute_tensor

        def this_slice(value, p):  # of each tensor of its parameter's shape; the rest as it is
            if isinstance(value, torch.Tensor) and value.dim() and value.shape == p.shape:
                return distribute_tensor(value, p.device_mesh, p.placements, src_data_rank=None)
            return value

        params = [p for group in optimizer.param_groups for p in group["params"]]
        sliced = {}
        for index, values in state.get("state", {}).items():
            known = isinstance(index, int) and 0 <= index < len(params) and isinstance(values, dict)
            sliced[index] = {k: this_slice(v, params[index]) for k, v in values.items()} if known else values
        optimizer.load_state_dict({**state, "state": sliced})  # it names what does not fit


def _whole(value):
    """A sharded tensor gathered whole onto the CPU; anything else as it is."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor().cpu() if isinstance(value, DTensor) else value
