"""Training throughput and memory per process with 1 and 2 processes (ddp and fsdp), the same global batch.

    python benchmarks/bench_ddp.py                          # configs/small.config, 1 and 2 processes
    python benchmarks/bench_ddp.py configs/small.config --nproc 1 2 4 --steps 40 --repeats 3
    python benchmarks/bench_ddp.py configs/large.config --steps 2 --warmup 1 --repeats 1 --batch_size=1

Each run is a real `python -m slo.runner CONFIG --nproc_per_node=N` in a
subprocess, with gradient_accumulation_steps fixed (default 4) so every
process count trains on the same tokens per step. Throughput is the global
tokens per step over the median step time (rank 0's log, one record per
step, warm-up steps left out); the runs alternate between process counts
so that all see the same machine load. The wall time of each whole command
(start-up, process launch and rendezvous included) is reported beside it.
Each process count above 1 runs under each --strategy (default: ddp and
fsdp). Memory is rank 0's: the parameters and optimizer state it holds
between steps (``state_mb`` of its log, its shards under fsdp) and the peak
memory of the process (``memory_mb``: peak RSS on the CPU, allocated memory
on a GPU).
The JSON goes to benchmarks/results/ unless --json says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slo.runner.bench import machine_info
from resultfile import write_json  # benchmarks/resultfile.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(config: Path, nproc: int, strategy: str, ns, out_dir: Path) -> dict:
    iters = ns.warmup + ns.steps
    cmd = [sys.executable, "-m", "slo.runner", str(config), f"--nproc_per_node={nproc}", f"--strategy={strategy}",
           f"--master_port={free_port()}", f"--gradient_accumulation_steps={ns.gradient_accumulation_steps}",
           f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--warmup_iters=0", f"--eval_interval={iters}",
           "--eval_iters=1", "--log_interval=1", "--always_save_checkpoint=False", f"--out_dir={out_dir}",
           "--device=cpu", "--compile=False", *ns.overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=ns.timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"nproc_per_node={nproc} strategy={strategy} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    steps = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "loss" in r and r["iter"] >= ns.warmup]
    ms = statistics.median(r["ms_per_iter"] for r in steps)
    tokens_per_step = steps[0]["tokens"] // (steps[0]["iter"] + 1)
    return {"ms_per_step": ms, "tokens_per_s": tokens_per_step * 1000 / ms, "wall_s": wall,
            "tokens_per_step": tokens_per_step, "final_loss": steps[-1]["loss"],
            "state_mb": steps[-1]["state_mb"], "peak_mb": max(r["memory_mb"] for r in steps)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "small.config"))
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="process counts (default: 1 2)")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=4,
                        help="micro-steps per step over all processes; divisible by each count (default: 4)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--strategy", nargs="+", default=["ddp", "fsdp"], choices=["ddp", "fsdp"],
                        help="strategies for process counts above 1 (default: ddp fsdp)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per process count, alternating (default: 2)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one run may take (default: 600)")
    parser.add_argument("--json", metavar="PATH", help="where to write the results")
    ns, ns.overrides = parser.parse_known_args(argv)
    bad = [n for n in ns.nproc if n < 1 or ns.gradient_accumulation_steps % n]
    if bad:
        parser.error(f"--gradient_accumulation_steps={ns.gradient_accumulation_steps} must be divisible by "
                     f"every --nproc (not {bad[0]})")

    kinds = [(n, s) for n in ns.nproc for s in (ns.strategy if n > 1 else ["ddp"])]
    runs: dict[tuple, list[dict]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="slo-bench-ddp-") as tmp:
        for repeat in range(ns.repeats):
            for n, strategy in kinds:
                run = one_run(Path(ns.config), n, strategy, ns, Path(tmp) / f"n{n}-{strategy}-r{repeat}")
                runs[n, strategy].append(run)
                print(f"nproc {n} {strategy} run {repeat + 1}: {run['tokens_per_s']:,.0f} tok/s "
                      f"({run['ms_per_step']:.1f} ms/step), {run['state_mb']:,.1f} MiB held, "
                      f"{run['wall_s']:.1f} s wall", flush=True)

    rows = []
    base = None
    for n, strategy in kinds:
        tps = statistics.median(r["tokens_per_s"] for r in runs[n, strategy])
        base = base or tps
        held = runs[n, strategy][-1]["state_mb"]
        rows.append({"nproc": n, "strategy": strategy, "tokens_per_s": tps, "speedup": tps / base,
                     "ms_per_step": statistics.median(r["ms_per_step"] for r in runs[n, strategy]),
                     "wall_s": statistics.median(r["wall_s"] for r in runs[n, strategy]),
                     "state_mb": held, "state_vs_one_process": held / rows[0]["state_mb"] if rows else 1.0,
                     "peak_mb": max(r["peak_mb"] for r in runs[n, strategy]), "runs": runs[n, strategy]})
    print(f"\n{'processes':>9} {'strategy':>8} {'tok/s':>10} {'speedup':>8} {'ms/step':>8} {'wall s':>7} "
          f"{'held MiB':>9} {'vs 1':>6} {'peak MiB':>9}")
    for row in rows:
        print(f"{row['nproc']:>9} {row['strategy']:>8} {row['tokens_per_s']:>10,.0f} {row['speedup']:>7.2f}x "
              f"{row['ms_per_step']:>8.1f} {row['wall_s']:>7.1f} {row['state_mb']:>9,.1f} "
              f"{row['state_vs_one_process']:>6.2f} {row['peak_mb']:>9,.0f}")

    machine = machine_info()
    results = {"machine": machine, "config": ns.config,
               "settings": {"gradient_accumulation_steps": ns.gradient_accumulation_steps, "steps": ns.steps,
                            "warmup": ns.warmup, "repeats": ns.repeats, "overrides": ns.overrides,
                            "memory": "rank 0's: state_mb = parameters + optimizer state held between steps "
                                      "(its shards under fsdp); peak_mb = the process's peak (RSS on the CPU)",
                            "threads": "1 process: torch's threads, capped at the usable cores; N processes: "
                                       "usable cores // N threads each (unless OMP_NUM_THREADS is set)"},
               "results": rows}
    write_json(results, "ddp", ns.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
