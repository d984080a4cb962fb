"""Where this process stands in a data-parallel run, and the collectives the trainer uses.

``torchrun_placement`` reads the rank torchrun (or slo's launcher) gave this
process; ``join_group`` joins the process group; ``rank_device`` gives each
rank of a CUDA run its own GPU. The trainer talks to the other ranks only
through a ``SingleProcess``, ``DataParallel`` or ``Sharded`` object
(``collectives``): shard and wrap the model, say when gradients are averaged,
average the loss, agree on a stop signal, hear rank 0's evaluation, gather
each rank's data position, and the whole weights and optimizer state, for a
checkpoint. ``communication_failure`` says what a failed collective means.

``Sharded`` is strategy=fsdp: FSDP2's ``fully_shard`` on every block, then on
the whole model (the order PyTorch documents: each block compiled first, and
activation checkpointing inside the model's forward). Its parameters are
DTensors, each rank holding one slice; the model is used as it is, without
a wrapper, and every rank joins every forward, evaluation included.

Environment: SLO_DDP_TIMEOUT (seconds a collective may wait, default 1800).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import RunError, first_line

TIMEOUT_ENV = "SLO_DDP_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0  # torch's own default for gloo; rank 0 evaluates and saves while the others wait
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

# gloo reports a dead peer or a timeout as a RuntimeError whose text says which
_TIMEOUT_TEXT = re.compile(r"timed out|timeout", re.IGNORECASE)
_LOST_PEER_TEXT = re.compile(r"connection (reset|closed|refused)|broken pipe|read error|write error|"
                             r"socket closed|peer", re.IGNORECASE)


@dataclass(frozen=True)
class Placement:
    """Where one process stands in a data-parallel run."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


class RankError(RunError):
    """A run-time failure of one rank; ``kind`` tells the launcher whether it caused the
    run's end ("error") or followed another rank's ("lost", "timeout")."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


def torchrun_placement(environ=None) -> Placement | None:
    """The placement torchrun (or any launcher setting its variables) gave this process, else None."""
    environ = os.environ if environ is None else environ
    present = [name for name in TORCHRUN_VARS if name in environ]
    if not present:
        return None
    if len(present) < len(TORCHRUN_VARS):
        missing = ", ".join(name for name in TORCHRUN_VARS if name not in environ)
        raise RunError(f"{', '.join(present)} set but {missing} not: launch with torchrun, which sets all of "
                       f"{', '.join(TORCHRUN_VARS)}, or unset them to let slo start the processes")
    try:
        rank, world, local = (int(environ[name]) for name in TORCHRUN_VARS)
        local_world = int(environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        shown = ", ".join(f"{name}={environ[name]!r}" for name in TORCHRUN_VARS)
        raise RunError(f"the torchrun variables must be integers ({shown})") from None
    if not (world >= 1 and 0 <= rank < world and 0 <= local < max(local_world, 1)):
        raise RunError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} do not describe a rank of the run")
    return Placement(rank, world, local, local_world)


def rank_device(device: torch.device, local_rank: int, world_size: int) -> torch.device:
    """Each rank of a CUDA run gets its own GPU, cuda:LOCAL_RANK; a lone process keeps a GPU it names."""
    if device.type != "cuda" or (world_size == 1 and device.index is not None):
        return device
    if local_rank >= torch.cuda.device_count():
        raise RunError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                       "start at most one process per GPU on each machine")
    return torch.device("cuda", local_rank)


def pick_backend(name: str, device: torch.device) -> str:
    """The DDP backend key for a device; auto: nccl on CUDA, gloo elsewhere."""
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and device.type != "cuda":
        raise RunError(f"backend=nccl needs CUDA devices, but this run is on {device}; "
                       "use backend=auto or backend=gloo")
    if name == "nccl" and not dist.is_nccl_available():
        raise RunError("backend=nccl but this torch was built without NCCL; use backend=gloo")
    return name


def collective_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise RunError(f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds; "
                       f"unset it for the default of {DEFAULT_TIMEOUT_S:g}")
    return seconds


class SingleProcess:
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


class DataParallel(SingleProcess):
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


class Sharded(DataParallel):
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


def loss_scaler(device: torch.device, float16: bool, sharded: bool):
    """float16's loss scaler (disabled for other dtypes). Where the ranks hold shards, the sharded one:
    each rank sees only its slice of the gradients, so an overflow found on one is agreed by all."""
    if float16 and sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type, enabled=float16)


def _whole(value):
    """A sharded tensor gathered whole onto the CPU; anything else as it is."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor().cpu() if isinstance(value, DTensor) else value


def collectives(world_size: int, device: torch.device, ddp_cfg, dtype: torch.dtype = torch.float32) -> SingleProcess:
    """Sharded (strategy=fsdp) or DataParallel once this process has joined a group (torchrun with
    one process too, as nanoGPT does), else SingleProcess."""
    if dist.is_available() and dist.is_initialized():
        if ddp_cfg.strategy == "fsdp":
            return Sharded(device, ddp_cfg, dtype)
        return DataParallel(device, ddp_cfg.find_unused_parameters)
    if world_size > 1:
        raise RunError(f"world_size={world_size} but this process has joined no process group; start "
                       "data-parallel runs with slo train and nproc_per_node, or with torchrun")
    return SingleProcess()


def compile_failure_in_group(error: BaseException) -> BaseException:
    """What to raise when torch.compile fails in a data-parallel run, where the ranks cannot
    all fall back to the plain model at once."""
    if communication_failure(error) is not None:
        return error
    return RunError(f"torch.compile failed ({type(error).__name__}: {first_line(error)[:200]}); a data-parallel run cannot "
                    "continue without it mid-run: set compile=False")


def communication_failure(error: BaseException) -> RankError | None:
    """A RankError saying what went wrong between the ranks, or None when ``error`` is not about them."""
    if isinstance(error, RunError):
        return None
    text = str(error)
    first = re.sub(r"^\[[^\]]*\]\s*", "", first_line(error) or type(error).__name__)[:300]  # drop gloo's source location
    is_dist = isinstance(error, getattr(dist, "DistError", ())) or "gloo" in text or "NCCL" in text
    if not (is_dist or isinstance(error, RuntimeError)):
        return None
    if _TIMEOUT_TEXT.search(text):
        return RankError(f"a collective operation timed out after {collective_timeout():g} s ({first}): another "
                         f"rank stopped answering; find the rank that hung, or set {TIMEOUT_ENV}=SECONDS "
                         "to wait longer", kind="timeout")
    if _LOST_PEER_TEXT.search(text) or is_dist:
        return RankError(f"lost contact with another rank ({first}); it probably failed first", kind="lost")
    return None


def join_group(cfg, placement: Placement, device: torch.device) -> str:
    """init_process_group for this rank (env:// rendezvous); the backend's name."""
    backend = pick_backend(cfg.ddp.backend, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=collective_timeout())
    try:
        dist.init_process_group(backend, rank=placement.rank, world_size=placement.world_size, timeout=timeout)
    except (RuntimeError, ValueError) as e:  # DistNetworkError and DistStoreError are RuntimeErrors
        text = str(e)
        addr, port = os.environ.get("MASTER_ADDR", "?"), os.environ.get("MASTER_PORT", "?")
        if "EADDRINUSE" in text or "address already in use" in text.lower():
            raise RunError(f"master_port={port} is in use on {addr}, so the ranks cannot meet there; "
                           "set master_port to a free port") from None
        raise RunError(f"rank {placement.rank} could not join the process group at {addr}:{port} "
                       f"({first_line(e) or type(e).__name__}); "
                       "check master_addr and master_port (the same on every machine), and that rank 0 "
                       "is running") from None
    return backend


def check_world(cfg, world_size: int) -> None:
    accumulation = cfg.data.gradient_accumulation_steps
    if accumulation % world_size:
        raise RunError(f"gradient_accumulation_steps={accumulation} is not divisible by the world size "
                       f"{world_size}: each rank runs an equal share of the micro-steps; make it a "
                       f"multiple of {world_size}")
