"""Data-parallel training: who runs, the process group, and a launcher that never hangs.

``train_processes(cfg)`` is what ``slo train`` runs. Under torchrun (RANK,
WORLD_SIZE and LOCAL_RANK set) this process is one rank: it joins the group
torchrun set up and trains. Otherwise, with ``nproc_per_node`` > 1, it is the
launcher: it starts one process per rank with ``torch.multiprocessing`` and
watches them. When a rank fails or is killed, the launcher stops the others
(SIGTERM, then SIGKILL after a grace period) and reports the rank that failed
first and why. SIGINT and SIGTERM sent to the launcher are forwarded to every
rank once; the ranks agree on the step to stop at, rank 0 saves a checkpoint.

The trainer talks to the other ranks only through a ``SingleProcess`` or
``DataParallel`` object (``collectives``): wrap the model, say when gradients
are averaged, average the loss, agree on a stop signal, hear rank 0's
evaluation, gather each rank's data position for a checkpoint.

Environment: SLO_DDP_TIMEOUT (seconds a collective may wait, default 1800);
SLO_TEST_FAIL_AT=RANK:ITER[:hang] makes one rank fail (or hang) at an
iteration, for the tests of failure handling only.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import RunError, first_line
from .device import pick_device, usable_cpus

TIMEOUT_ENV = "SLO_DDP_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0  # torch's own default for gloo; rank 0 evaluates and saves while the others wait
FAIL_HOOK_ENV = "SLO_TEST_FAIL_AT"
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
GRACE_S = 5.0  # after a rank fails, how long the others get to exit on SIGTERM before SIGKILL
POLL_S = 0.2
EXIT_RUN_ERROR = 1
CLEAN_STOPS = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # a rank that saved and stopped on a signal

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


# ---------------------------------------------------------------- what runs where


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


def processes_per_node(cfg) -> int:
    """nproc_per_node, or when None the visible GPUs (1 on the CPU, or with one named GPU)."""
    wanted = cfg.ddp.nproc_per_node
    device = pick_device(cfg.system.device)
    if wanted is None:
        named_gpu = cfg.system.device.startswith("cuda:")
        return max(torch.cuda.device_count(), 1) if device.type == "cuda" and not named_gpu else 1
    if wanted > 1 and device.type == "cuda" and wanted > torch.cuda.device_count():
        raise RunError(f"nproc_per_node={wanted} but {torch.cuda.device_count()} CUDA device(s) are visible and "
                       f"each process needs its own; set nproc_per_node to at most {torch.cuda.device_count()}")
    if wanted > 1 and device.type == "mps":
        raise RunError(f"nproc_per_node={wanted}: data-parallel training runs on CUDA or the CPU, not on mps; "
                       "use nproc_per_node=1, or device=cpu")
    return wanted


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


# ---------------------------------------------------------------- the collectives the trainer uses


class SingleProcess:
    """The collectives of a one-process run: every one is the identity."""

    world_size = 1

    def wrap(self, model):
        return model

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


def collectives(world_size: int, device: torch.device, ddp_cfg) -> SingleProcess:
    """DataParallel once this process has joined a group (torchrun with one process too, as nanoGPT
    does), else SingleProcess."""
    if dist.is_available() and dist.is_initialized():
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


# ---------------------------------------------------------------- one rank


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


def run_rank(cfg, placement: Placement) -> int:
    """Join the group, train as this rank, leave the group; the exit status."""
    from .trainer import Trainer

    check_world(cfg, placement.world_size)
    device = rank_device(pick_device(cfg.system.device), placement.local_rank, placement.world_size)
    join_group(cfg, placement, device)
    try:
        trainer = Trainer(cfg, rank=placement.rank, world_size=placement.world_size,
                          local_rank=placement.local_rank)
        if placement.rank == 0:
            trainer.say(f"data-parallel: {placement.world_size} ranks, backend {dist.get_backend()}, "
                        f"{trainer.micro_steps} micro-step(s) each per step")
        install_test_hook(trainer)
        status = trainer.train().exit_status
    except Exception as e:
        failure = communication_failure(e)
        if failure is None:
            raise
        raise failure from None
    dist.destroy_process_group()
    return status


def install_test_hook(trainer) -> None:
    """SLO_TEST_FAIL_AT=RANK:ITER[:hang]: that rank raises (or hangs) when it reaches ITER. For tests."""
    spec = os.environ.get(FAIL_HOOK_ENV)
    if not spec:
        return
    match = re.fullmatch(r"(\d+):(\d+)(?::(raise|hang))?", spec.strip())
    if match is None:
        raise RunError(f"{FAIL_HOOK_ENV}={spec!r}: expected RANK:ITER or RANK:ITER:hang (a test hook)")
    rank, at, mode = int(match[1]), int(match[2]), match[3] or "raise"
    if rank != trainer.rank:
        return
    step = trainer.train_step

    def failing_step():
        if trainer.progress.iter_num == at:
            if mode == "hang":
                while True:
                    time.sleep(60)
            raise RunError(f"{FAIL_HOOK_ENV} made rank {rank} fail at iter {at}")
        return step()

    trainer.train_step = failing_step


def train_processes(cfg) -> int:
    """Train as the config and the environment say: one process, one torchrun rank, or N spawned ranks."""
    placement = torchrun_placement()
    if placement is not None:  # even one process joins the group, so one GPU runs the NCCL path
        try:
            return run_rank(cfg, placement)
        except RunError as e:
            raise RunError(f"rank {placement.rank}: {e}") from None
    nproc = processes_per_node(cfg)
    if nproc > 1:
        return launch(cfg, nproc)
    from .trainer import Trainer

    return Trainer(cfg).train().exit_status


# ---------------------------------------------------------------- the launcher


def check_port(addr: str, port: int) -> None:
    """RunError unless this machine can listen on master_addr:master_port now."""
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise RunError(f"master_addr={addr} cannot be resolved ({e}); use master_addr=127.0.0.1 for a run "
                       "on this machine") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to reuse
        try:
            probe.bind(sockaddr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise RunError(f"master_port={port} is in use on {addr} (another run or program listens "
                               "there); set master_port to a free port, e.g. --master_port="
                               f"{port + 1 if port < 65535 else 29500}") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise RunError(f"master_addr={addr} is not an address of this machine; processes started by "
                               "nproc_per_node meet on this machine (master_addr=127.0.0.1); start runs across "
                               "machines with torchrun") from None
            raise RunError(f"cannot listen on master_addr={addr} master_port={port} ({e.strerror}); "
                           "set master_port to a free port above 1023") from None


def launch(cfg, nproc: int) -> int:
    """Start nproc ranks on this machine, watch them, return the run's exit status.
    RunError when a rank fails, naming it and its error."""
    import torch.multiprocessing as mp

    addr, port = cfg.ddp.master_addr, cfg.ddp.master_port
    check_world(cfg, nproc)
    pick_backend(cfg.ddp.backend, pick_device(cfg.system.device))
    collective_timeout()
    check_port(addr, port)
    with tempfile.TemporaryDirectory(prefix="slo-ddp-") as reports:
        context = mp.start_processes(_spawned_rank, args=(cfg, nproc, addr, port, reports), nprocs=nproc,
                                     join=False, start_method="spawn")
        pids = ", ".join(str(p.pid) for p in context.processes)
        print(f"started {nproc} processes on {addr}:{port} (pids {pids})", flush=True)
        return Watchdog(context.processes, Path(reports)).run()


def _spawned_rank(local_rank: int, cfg, nproc: int, addr: str, port: int, reports: str) -> None:
    """The body of one process started by ``launch``; exits with the rank's status."""
    if hasattr(os, "setpgid"):
        os.setpgid(0, 0)  # the terminal's Ctrl-C reaches the launcher alone, which forwards it once
    os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port), RANK=str(local_rank), LOCAL_RANK=str(local_rank),
                      WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    if "OMP_NUM_THREADS" not in os.environ:  # the ranks share this machine's cores
        torch.set_num_threads(max(1, usable_cpus() // nproc))
    try:
        status = run_rank(cfg, Placement(local_rank, nproc, local_rank, nproc))
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    except RunError as e:
        _write_report(reports, local_rank, getattr(e, "kind", "error"), str(e))
        status = EXIT_RUN_ERROR
    except Exception as e:  # a bug: the traceback helps, the launcher names the rank
        traceback.print_exc()
        _write_report(reports, local_rank, "error", f"{type(e).__name__}: {first_line(e)} (traceback above)")
        status = EXIT_RUN_ERROR
    sys.stdout.flush()
    sys.exit(status)


def _write_report(folder: str, rank: int, kind: str, message: str) -> None:
    path = Path(folder) / f"rank{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"kind": kind, "message": message}), encoding="utf-8")
    os.replace(tmp, path)


class Watchdog:
    """Waits for the ranks; stops them all when one fails; forwards stop signals."""

    def __init__(self, processes, reports: Path, grace: float = GRACE_S):
        self.processes = list(processes)
        self.reports = reports
        self.grace = grace
        self.exit_order: list[int] = []  # ranks in the order their exits were seen
        self.stopped_by_us: set[int] = set()
        self.forwarded: int | None = None  # the stop signal passed on to the ranks
        self.kill_at: float | None = None

    def run(self) -> int:
        previous = {s: signal.signal(s, self._forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._watch()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for process in self.processes:  # never leave a rank behind
                if process.exitcode is None:
                    process.kill()
                    process.join()
        return self._outcome()

    def _forward(self, signum, frame) -> None:
        self.forwarded = signum
        self._signal_alive(signum)

    def _signal_alive(self, signum: int) -> None:
        for process in self.processes:
            if process.exitcode is None:
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass

    def _watch(self) -> None:
        while True:
            alive = [p for p in self.processes if p.exitcode is None]
            for rank, process in enumerate(self.processes):
                if process.exitcode is not None and rank not in self.exit_order:
                    self.exit_order.append(rank)
                    if self.kill_at is None and not self._clean(process.exitcode):
                        self._stop_the_others(rank)
            if not alive:
                return
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                for process in alive:
                    process.kill()
            wait([p.sentinel for p in alive], timeout=POLL_S)

    def _clean(self, exitcode: int) -> bool:
        if exitcode == 0 or exitcode in CLEAN_STOPS:
            return True
        return self.forwarded is not None and exitcode == -self.forwarded  # stopped before its handler was set

    def _stop_the_others(self, failed: int) -> None:
        for rank, process in enumerate(self.processes):
            if rank != failed and process.exitcode is None:
                self.stopped_by_us.add(rank)
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.kill_at = time.monotonic() + self.grace

    def _report(self, rank: int) -> tuple[str, str]:
        """(kind, message) of a rank that did not stop cleanly."""
        exitcode = self.processes[rank].exitcode
        if exitcode < 0:
            name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
            kind = "stopped" if rank in self.stopped_by_us else "error"
            hint = ""
            if name == "SIGKILL":
                hint = " (the kernel's out-of-memory killer sends SIGKILL: check the memory use)"
            return kind, f"was killed by {name}{hint}"
        path = self.reports / f"rank{rank}.json"
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            return report["kind"], report["message"]
        except (OSError, ValueError, KeyError):
            return "error", f"exited with status {exitcode}"

    def _outcome(self) -> int:
        failed = [r for r in self.exit_order if not self._clean(self.processes[r].exitcode)]
        if failed:
            reports = {rank: self._report(rank) for rank in failed}
            order = {"error": 0, "timeout": 1, "lost": 2, "stopped": 3}
            first = min(failed, key=lambda r: (order.get(reports[r][0], 0), self.exit_order.index(r)))
            others = len(self.processes) - 1
            pid = self.processes[first].pid
            raise RunError(f"rank {first} (pid {pid}) {'' if reports[first][1].startswith('was ') else 'failed: '}"
                           f"{reports[first][1]}; {'the other rank' if others == 1 else f'the other {others} ranks'}"
                           " stopped too")
        statuses = [p.exitcode for p in self.processes if p.exitcode]
        if statuses:
            return statuses[0] if statuses[0] > 0 else 128 - statuses[0]
        return 0
