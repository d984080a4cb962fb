"""The GPU suite's Python half (benchmarks/gpu_suite.sh runs it).

``gpu_report.py profile CONFIG OUT [--dry] [--key=value ...]``: trains a few steps of CONFIG under
torch.profiler and writes OUT/profile.json: the top kernels by device time, each step's wall time, and
the share of it the device sat idle (host-side gaps: launches, syncs, data copies that do not overlap).

``gpu_report.py summary OUT``: the bench and profile results in OUT as one table (summary.txt) and
one JSON (summary.json).

--dry runs on the CPU with CPU activities only, so the plumbing can be checked anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PROFILED_STEPS = 5
WARMUP_STEPS = 3  # compile and allocator warm-up, not profiled
TOP_KERNELS = 12


def profile(config: str, out: Path, dry: bool, overrides: list[str]) -> dict:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    import slo
    from slo.runner.trainer import Trainer

    cfg = slo.load(config, overrides=overrides)
    trainer = Trainer(cfg)
    cuda = trainer.device.type == "cuda"
    for _ in range(WARMUP_STEPS):
        trainer.train_step(trainer.schedule(0), trainer.step_batches())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        start = time.perf_counter()
        for i in range(PROFILED_STEPS):  # as the training loop runs between logged steps: checked at the last
            trainer.train_step(trainer.schedule(0), trainer.step_batches(), check=i == PROFILED_STEPS - 1)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    timed = "self_device_time_total" if cuda else "self_cpu_time_total"
    kernels = [e for e in events if getattr(e, timed, 0) > 0 and (not cuda or e.device_type.name == "CUDA")]
    busy_us = sum(getattr(e, timed) for e in kernels)
    kernels.sort(key=lambda e: getattr(e, timed), reverse=True)
    wall_us = wall * 1e6
    result = {
        "config": config, "overrides": overrides, "device": str(trainer.device), "dry": dry,
        "steps": PROFILED_STEPS, "step_ms": round(wall * 1e3 / PROFILED_STEPS, 3),
        "device_busy_fraction": round(min(1.0, busy_us / wall_us), 4) if cuda else None,
        "host_gap_fraction": round(max(0.0, 1 - busy_us / wall_us), 4) if cuda else None,
        "top_kernels": [{"name": e.key[:120], "ms_per_step": round(getattr(e, timed) / 1e3 / PROFILED_STEPS, 4),
                         "share": round(getattr(e, timed) / max(busy_us, 1), 4), "calls": e.count}
                        for e in kernels[:TOP_KERNELS]],
    }
    (out / "profile.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def summary(out: Path) -> dict:
    rows, data = [], {"machine": _read(out / "machine.json"), "bench": {}, "profile": _read(out / "profile.json")}
    for path in sorted(out.glob("bench-*.json")):
        name = path.stem.removeprefix("bench-")
        data["bench"][name] = bench = _read(path)
        rows.append(f"{name:<10} {json.dumps(_headline(bench))}")
    profile = data["profile"] or {}
    lines = [f"machine: {json.dumps(data['machine'])}", "", "bench (slo beside the nanoGPT-style loop):", *rows]
    if profile:
        lines += ["", f"profile of {profile['config']}: step ms {profile['step_ms']}, host gaps "
                      f"{profile['host_gap_fraction']}", *[f"  {k['share']:6.1%}  {k['ms_per_step']:9.3f} ms  {k['name']}"
                                                          for k in profile["top_kernels"]]]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(lines))
    return data


def _headline(bench: dict | None) -> dict:
    """The figures of one slo bench JSON that the summary shows: each side's tokens/s, MFU and memory,
    and slo's speed over the nanoGPT-style loop."""
    if not bench or not bench.get("configs"):
        return {}
    run = bench["configs"][0]
    out = {side: {"tokens_per_s": round(v["tokens_per_s"]), "mfu": round(v["mfu"] or 0, 4),
                  "memory_mb": round(v["memory_mb"] or 0)} for side, v in run["sides"].items()}
    out["speedup"] = round(run["speedup"], 3)
    return out


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile")
    p.add_argument("config")
    p.add_argument("out", type=Path)
    p.add_argument("--dry", action="store_true")
    s = sub.add_parser("summary")
    s.add_argument("out", type=Path)
    ns, rest = parser.parse_known_args(argv)
    ns.out.mkdir(parents=True, exist_ok=True)
    if ns.command == "profile":
        result = profile(ns.config, ns.out, ns.dry, rest)
        print(f"profile: {result['device']}, step ms {result['step_ms']}, host gaps {result['host_gap_fraction']}")
    else:
        summary(ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
