"""Where this process stands in a data-parallel run, and the process group it joins.

``torchrun_placement`` reads the rank torchrun (or slo's launcher) gave this
process; ``join_group`` joins the process group; ``rank_device`` gives each
rank of a CUDA run its own GPU; ``group_for`` picks the collectives the
trainer talks to the other ranks through (slo.runner.distributed.collectives,
and .fsdp for strategy=fsdp). ``communication_failure`` says what a failed
collective means.

Environment: SLO_DDP_TIMEOUT (seconds a collective may wait, default 1800).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ...errors import RunError, first_line
from .collectives import DataParallelGroup, SingleProcessGroup
from .fsdp import FsdpGroup

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


def group_for(world_size: int, device: torch.device, ddp_cfg, dtype: torch.dtype = torch.float32) -> SingleProcessGroup:
    """FsdpGroup (strategy=fsdp) or DataParallelGroup once this process has joined a group (torchrun with
    one process too, as nanoGPT does), else SingleProcessGroup."""
    if dist.is_available() and dist.is_initialized():
        if ddp_cfg.strategy == "fsdp":
            return FsdpGroup(device, ddp_cfg, dtype)
        return DataParallelGroup(device, ddp_cfg.find_unused_parameters)
    if world_size > 1:
        raise RunError(f"world_size={world_size} but this process has joined no process group; start "
                       "data-parallel runs with slo train and nproc_per_node, or with torchrun")
    return SingleProcessGroup()


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


def idle_key_notes(cfg, world_size: int, device: torch.device) -> list[str]:
    """A line for each DDP key this run cannot act on."""
    ddp, accumulation = cfg.ddp, cfg.data.gradient_accumulation_steps
    notes = []
    if world_size == 1 and (ddp.nproc_per_node or 1) > 1:
        notes.append(f"note: nproc_per_node={ddp.nproc_per_node} is not used by this trainer: one process "
                     f"runs all {accumulation} micro-steps of each step (slo train starts the processes)")
    if ddp.strategy == "fsdp" and world_size == 1:
        notes.append("warning: strategy=fsdp with one process shards nothing: the model, its gradients and "
                     "optimizer state stay whole in this process; start two or more (nproc_per_node, torchrun)")
    if ddp.fsdp_cpu_offload and device.type == "cpu":
        notes.append("note: fsdp_cpu_offload=True: this run is on the CPU already, so nothing is offloaded")
    return notes
