"""Starting a run: one process, one torchrun rank, or N ranks started and watched here.

``train_processes(cfg)`` is what ``slo train`` runs. Under torchrun (RANK,
WORLD_SIZE and LOCAL_RANK set) this process is one rank: it joins the group
torchrun set up and trains. Otherwise, with ``nproc_per_node`` > 1, it is the
launcher: it starts one process per rank with ``torch.multiprocessing`` and
watches them. When a rank fails or is killed, the launcher stops the others
(SIGTERM, then SIGKILL after a grace period) and reports the rank that failed
first and why. SIGINT and SIGTERM sent to the launcher are forwarded to every
rank once; the ranks agree on the step to stop at, rank 0 saves a checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import wait
from pathlib import Path

import torch
import torch.distributed as dist

from .. import atomic
from ..errors import ConfigError, RunError, first_line
from .device import pick_device, usable_cpus
from ..outdir.files import read_json
from ..outdir.lock import RunLock
from .distributed.placement import (Placement, check_world, collective_timeout, communication_failure, join_group, pick_backend,
                       rank_device, torchrun_placement)
from .trainer import Trainer, TrainResult

GRACE_S = 5.0  # after a rank fails, how long the others get to exit on SIGTERM before SIGKILL
POLL_S = 0.2
EXIT_RUN_ERROR = 1
CLEAN_STOPS = (128 + signal.SIGINT, 128 + signal.SIGTERM)  # a rank that saved and stopped on a signal


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


def run_rank(cfg, placement: Placement) -> int:
    """Join the group, train as this rank, leave the group; the exit status."""
    check_world(cfg, placement.world_size)
    device = rank_device(pick_device(cfg.system.device), placement.local_rank, placement.world_size)
    join_group(cfg, placement, device)
    try:
        trainer = Trainer(cfg, rank=placement.rank, world_size=placement.world_size,
                          local_rank=placement.local_rank)
        if placement.rank == 0:
            trainer.say(f"data-parallel ({cfg.ddp.strategy}): {placement.world_size} ranks, backend "
                        f"{dist.get_backend()}, {trainer.micro_steps} micro-step(s) each per step")
        status = trainer.train().exit_status
    except Exception as e:
        failure = communication_failure(e)
        if failure is None:
            raise
        raise failure from None
    dist.destroy_process_group()
    return status


def train_processes(cfg) -> int:
    """Train as the config and the environment say: one process, one torchrun rank, or N spawned ranks.
    The run holds out_dir's lock throughout (taken once: here, or by torchrun's rank 0)."""
    placement = torchrun_placement()
    if placement is not None:  # even one process joins the group, so one GPU runs the NCCL path
        try:
            with run_lock(cfg, placement.rank == 0):
                return run_rank(cfg, placement)
        except RunError as e:
            raise RunError(f"rank {placement.rank}: {e}") from None
    nproc = processes_per_node(cfg)
    if nproc == 1:
        return train_in_process(cfg).exit_status
    with run_lock(cfg):
        return launch(cfg, nproc)


def train_in_process(cfg) -> TrainResult:
    """Train in this process, holding out_dir's lock throughout; RunError for a run that needs more processes."""
    if torchrun_placement() is not None or processes_per_node(cfg) > 1:
        raise RunError(f"this run wants {processes_per_node(cfg)} processes (or runs under torchrun), and slo.train "
                       "trains in the calling process: run it with slo train, or set nproc_per_node=1")
    with run_lock(cfg):
        return Trainer(cfg).train()


def run_lock(cfg, take: bool = True):
    """out_dir's run lock for a run that writes there (an eval_only run writes nothing)."""
    if not take or cfg.train.eval_only:
        return contextlib.nullcontext()
    return RunLock(cfg.logging.out_dir)


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
    atomic.sweep(tempfile.gettempdir(), "slo-ddp")  # the reports of launchers that were killed
    with tempfile.TemporaryDirectory(prefix=atomic.prefix("slo-ddp")) as reports:
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
    except (RunError, ConfigError) as e:  # a ConfigError: what the config names is not there (eval_tasks)
        _write_report(reports, local_rank, getattr(e, "kind", "error"), str(e))
        status = EXIT_RUN_ERROR
    except Exception as e:  # a bug: the traceback helps, the launcher names the rank
        traceback.print_exc()
        _write_report(reports, local_rank, "error", f"{type(e).__name__}: {first_line(e)} (traceback above)")
        status = EXIT_RUN_ERROR
    sys.stdout.flush()
    sys.stderr.flush()
    # The rank's work is saved and its files closed. Leaving without the interpreter's teardown spares it
    # the C++ runtime's: a thread of a torch or gloo pool still joinable there aborts the process (SIGABRT,
    # "terminate called without an active exception") after a clean run.
    os._exit(status)


def _write_report(folder: str, rank: int, kind: str, message: str) -> None:
    report = json.dumps({"kind": kind, "message": message})
    atomic.replace_file(Path(folder) / f"rank{rank}.json", lambda f: f.write(report), mode="w", encoding="utf-8")


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
        """(kind, message) of a rank that did not stop cleanly: what it reported before it ended (a rank
        can still die at exit, as the C++ runtime tears down its threads), else how it ended."""
        exitcode = self.processes[rank].exitcode
        try:
            report = read_json(self.reports / f"rank{rank}.json")
            return report["kind"], report["message"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        if exitcode < 0:
            name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
            kind = "stopped" if rank in self.stopped_by_us else "error"
            hint = ""
            if name == "SIGKILL":
                hint = " (the kernel's out-of-memory killer sends SIGKILL: check the memory use)"
            return kind, f"was killed by {name}{hint}"
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
