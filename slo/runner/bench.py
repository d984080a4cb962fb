"""``slo bench``: training throughput of slo's trainer beside a nanoGPT-style loop.

For each config, both train the same model (the same initial weights) on
the same batch shape, on this machine, in the same process, in alternating
blocks of steps so that both see the same machine load. The nanoGPT-style
loop makes nanoGPT's choices: no autocast on the CPU (bfloat16, or float16
with a loss scaler, on CUDA), a batch built by a Python loop over its rows
from a memmap opened at every call, fused AdamW only on CUDA, and
torch.compile when the config asks for it. It draws the same windows as
slo's sampler so the losses of the two can be compared step by step.

Each step is split into data, forward/backward and optimizer time, with a
device sync between the phases; the figures are medians over the timed
steps, so a step slowed by another process does not move them. MFU is
against a large matmul timed here in each side's compute dtype. Prints a
table; ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

from ..command import add_trust_flags
from ..errors import RunError, UsageError

SHIPPED_CONFIGS = ("small", "standard", "large")
PHASES = ("data", "forward_backward", "optimizer")


def add_arguments(parser: argparse.ArgumentParser, command: str = "bench") -> None:
    parser.add_argument("configs", nargs="*", metavar="CONFIG",
                        help=f"config files, or names of shipped configs ({', '.join(SHIPPED_CONFIGS)}; default: all)")
    parser.add_argument("--batch_size", type=int, help="sequences per step (default: the config's)")
    parser.add_argument("--block_size", type=int, help="tokens per sequence (default: the config's)")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1, help="micro-steps per step (default: 1)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per side (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first, compile included (default: 2)")
    parser.add_argument("--block", type=int, default=1, help="steps per side before switching sides (default: 1)")
    parser.add_argument("--compile", choices=("config", "on", "off"), default="config",
                        help="torch.compile for both sides (default: as the config says)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    add_trust_flags(parser)
    parser.epilog = "Other overrides: --key=value, applied to every config (e.g. --device=cpu --dataset=builtin)."


def main(argv: list[str] | None = None) -> int:
    """Entry point of benchmarks/bench_train.py."""
    from ..command import main_of

    parser = argparse.ArgumentParser(prog="slo bench", description=__doc__.split("\n")[0], allow_abbrev=False)
    add_arguments(parser)
    return main_of(parser, run, argv, overrides=True)


def run(ns: argparse.Namespace, rest: list[str]) -> int:
    try:
        path = Path(ns.json) if ns.json else None
        if path is not None:  # before the benchmark, so its results are never lost to a bad --json
            check_writable(path)
        results = benchmark(ns, rest)
        if path is not None:
            try:
                path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            except OSError as e:
                print(json.dumps(results, indent=2))
                raise RunError(f"cannot write --json {path}: {e.strerror or e}; the results are printed above") from None
            print(f"wrote {path}")
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def check_writable(path: Path) -> None:
    if path.is_dir():
        raise RunError(f"--json {path} is a folder; name a file, e.g. {path / 'bench.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot write --json {path}: {e.strerror or e}; choose a writable file") from None
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise RunError(f"cannot write --json {path}: permission denied; choose a writable file")


def config_path(name: str) -> Path:
    """A config file as given, or a shipped config by name (configs/NAME.config)."""
    path = Path(name)
    if path.suffix or path.exists():
        return path
    shipped = Path(__file__).resolve().parents[2] / "configs" / f"{name}.config"
    if not shipped.exists():
        shipped = Path("configs") / f"{name}.config"
    return shipped


def benchmark(ns: argparse.Namespace, overrides: list[str]) -> dict:
    from ..resolve import load

    configs = [config_path(c) for c in (ns.configs or SHIPPED_CONFIGS)]
    for path in configs:
        if not path.exists():
            raise RunError(f"config {path} not found; give a config file or one of {', '.join(SHIPPED_CONFIGS)}")
    if min(ns.steps, ns.block) < 1 or ns.warmup < 0 or (ns.threads is not None and ns.threads < 1):
        raise UsageError("--steps, --block and --threads must be >= 1, --warmup >= 0")
    loaded = []
    for path in configs:  # every config is checked before torch starts
        extra = [f"--gradient_accumulation_steps={ns.gradient_accumulation_steps}", "--init_from=scratch"]
        extra += [f"--{k}={getattr(ns, k)}" for k in ("batch_size", "block_size") if getattr(ns, k) is not None]
        if ns.compile != "config":
            extra.append(f"--compile={ns.compile == 'on'}")
        loaded.append((path, load(path, overrides=[*overrides, *extra], trust_py=ns.trust_py,
                                  trust_env=ns.trust_env)))
        os.environ.update(loaded[-1][1].env)

    import torch

    if ns.threads:
        torch.set_num_threads(ns.threads)
    results = {"machine": machine_info(), "settings": {
        "steps": ns.steps, "warmup": ns.warmup, "block": ns.block, "threads": torch.get_num_threads(),
        "gradient_accumulation_steps": ns.gradient_accumulation_steps}, "configs": []}
    print(f"machine: {results['machine']['description']}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    for path, cfg in loaded:
        row = bench_config(path, cfg, ns)
        results["configs"].append(row)
        print_rows(row)
    return results


def machine_info() -> dict:
    import torch

    from .device import usable_cpus

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    cores = usable_cpus()
    return {"cpu": cpu, "cores": cores, "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
            "description": f"{cpu} ({cores} cores)" + (f", {gpu}" if gpu else "")}


class PhaseTimer:
    """Seconds per phase of the current step, with a device sync at each phase's end."""

    def __init__(self, device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        from .device import synchronize

        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


class NanoGPTStyleLoop:
    """The same model trained the way nanoGPT's train.py trains it."""

    def __init__(self, model, *, compiled: bool, train, data, micro_steps: int, tokens, rank: int, timer):
        """model: slo's, whose copy this loop trains (the same shape and initial weights); train, data:
        the config's TRAIN and DATA sections; tokens: the train split; timer: as the trainer's."""
        import numpy as np
        import torch

        from .data.datasets import ShardedTokens
        from .model.gpt import build_model
        from .model.optimizers import param_groups

        device = self.device = next(model.parameters()).device
        self.model = build_model(model.args, device)
        self.model.load_state_dict(model.state_dict())  # the same initial weights
        self.forward = torch.compile(self.model) if compiled else self.model
        if device.type == "cpu":  # nanoGPT: no autocast on the CPU, whatever dtype says
            self.ctx, dtype = contextlib.nullcontext(), torch.float32
        else:
            dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
            self.ctx = torch.autocast(device_type=device.type, dtype=dtype)
        self.dtype = dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        fused = {"fused": True} if device.type == "cuda" else {}  # nanoGPT fuses only on CUDA
        self.optimizer = torch.optim.AdamW(param_groups(self.model, train.weight_decay), lr=train.learning_rate,
                                           betas=(train.beta1, train.beta2), **fused)
        self.grad_clip = train.grad_clip
        self.micro_steps = micro_steps
        self.batch_size, self.block_size = data.batch_size, data.block_size
        first = tokens.shards[0] if isinstance(tokens, ShardedTokens) else tokens  # nanoGPT reads one file
        self.train_file, self.token_dtype, self.offset = first.filename, first.dtype, first.offset
        self.same_data = first is tokens or len(tokens.shards) == 1
        # slo's sampler stream, so that both sides see the same windows
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([train.seed % 2**64, rank])))
        self.timer = timer

    def get_batch(self):
        import numpy as np
        import torch

        data = np.memmap(self.train_file, dtype=self.token_dtype, mode="r", offset=self.offset)
        ix = self.rng.integers(0, len(data) - self.block_size, size=self.batch_size)
        x = torch.stack([torch.from_numpy(data[i:i + self.block_size].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + self.block_size].astype(np.int64)) for i in ix])
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def train_step(self, lr: float) -> float:
        import torch

        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = 0.0
        for _ in range(self.micro_steps):
            with self.timer("data"):
                x, y = self.get_batch()
            with self.timer("forward_backward"):
                with self.ctx:
                    _, loss = self.forward(x, y)
                    loss = loss / self.micro_steps
                self.scaler.scale(loss).backward()
                total = total + loss.detach()
        with self.timer("optimizer"):
            if self.grad_clip != 0.0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return float(total)


def bench_config(path: Path, cfg, ns) -> dict:
    import torch

    from tqdm import tqdm

    from .device import memory_mb
    from .model.optimizers import optimizer_name
    from .trainer import Trainer

    console = io.StringIO()
    trainer = Trainer(cfg, stream=console)
    note = console.getvalue().strip()
    if "compile:" in note:
        print(note)
    trainer.timer = PhaseTimer(trainer.device)
    baseline = NanoGPTStyleLoop(trainer.model, compiled=trainer.forwards.eval is not trainer.model,
                                train=trainer.train_cfg, data=trainer.data_cfg, micro_steps=trainer.micro_steps,
                                tokens=trainer.dataset.train, rank=trainer.rank, timer=trainer.timer)
    sides = {"slo": trainer, "nanogpt": baseline}
    losses = {name: [] for name in sides}
    phases = {name: [] for name in sides}
    memory = {name: 0.0 for name in sides}
    cuda = trainer.device.type == "cuda"

    def step(name: str, it: int) -> dict[str, float]:
        if cuda:
            torch.cuda.reset_peak_memory_stats(trainer.device)
        if name == "slo":
            trainer.progress.iter_num = it
            compiled = trainer.forwards.compiled
            loss = trainer.train_step(trainer.schedule(it), trainer.step_batches())
            if compiled and not trainer.forwards.compiled:  # compilation failed here: both sides go without
                said = console.getvalue().strip().splitlines()
                print(said[-1] if said else "compile: torch.compile failed; both sides run without it")
                baseline.forward = baseline.model
        else:
            loss = baseline.train_step(trainer.schedule(it))
        losses[name].append(loss)
        memory[name] = max(memory[name], memory_mb(trainer.device))  # CPU: the whole process's peak RSS
        return trainer.timer.take()

    total = ns.warmup + ns.steps
    bar = tqdm(total=total * len(sides), desc=path.name, unit="step", leave=False, file=sys.stderr,
               disable=not sys.stderr.isatty())
    for it in range(0, total, ns.block):
        for name in sides:
            for i in range(it, min(it + ns.block, total)):
                seconds = step(name, i)
                bar.update(1)
                if i >= ns.warmup:
                    phases[name].append(seconds)
    bar.close()
    run = {"model": trainer.model, "device": trainer.device, "dtype": trainer.dtype, "data": trainer.data_cfg,
           "tokens_per_step": trainer.tokens_per_iter, "compile": trainer.forwards.eval is not trainer.model,
           "optimizer": optimizer_name(trainer.train_cfg, trainer.optimizer_kind)}
    return _figures(path, run, baseline, phases, losses, memory)


def _figures(path: Path, run: dict, baseline, phases: dict, losses: dict, memory: dict) -> dict:
    """The row of one config: each side's throughput, phases, MFU, memory and losses, and their ratio;
    run: slo's side (its model, device, dtype, DATA section, tokens per step, compile and optimizer)."""
    from .device import measure_matmul_flops

    tokens_per_step, device = run["tokens_per_step"], run["device"]
    flops_per_token = run["model"].flops_per_token()
    dtypes = {"slo": run["dtype"], "nanogpt": baseline.dtype}
    peaks = {dtype: measure_matmul_flops(device, dtype, seconds=1.0) for dtype in set(dtypes.values())}
    row = {"config": str(path), "params": run["model"].num_params(), "device": str(device),
           "batch_size": run["data"].batch_size, "block_size": run["data"].block_size,
           "tokens_per_step": tokens_per_step, "compile": run["compile"],
           "matmul_peak_flops": {str(d).removeprefix("torch."): f for d, f in peaks.items()}, "sides": {}}
    for name in phases:
        steps = phases[name]
        split = {p: median([s.get(p, 0.0) for s in steps]) for p in PHASES}
        step_s = median([sum(s.values()) for s in steps])
        row["sides"][name] = {
            "dtype": str(dtypes[name]).removeprefix("torch."),
            "optimizer": run["optimizer"] if name == "slo" else
                         ("AdamW fused" if device.type == "cuda" else "AdamW for-loop"),
            "tokens_per_s": tokens_per_step / step_s,
            "ms_per_step": 1000 * step_s,
            "ms_per_step_mean": 1000 * sum(sum(s.values()) for s in steps) / len(steps),
            "ms": {p: 1000 * v for p, v in split.items()},
            "mfu": flops_per_token * tokens_per_step / step_s / peaks[dtypes[name]],
            "memory_mb": memory[name],
            "losses": losses[name],
        }
    slo_side, base = row["sides"]["slo"], row["sides"]["nanogpt"]
    row["speedup"] = slo_side["tokens_per_s"] / base["tokens_per_s"]
    row["max_loss_difference"] = max(abs(a - b) for a, b in zip(slo_side["losses"], base["losses"]))
    row["same_data"] = baseline.same_data
    return row


def median(values: list[float]) -> float:
    """The middle value: a step slowed by another process on a shared machine does not move it."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def print_rows(row: dict) -> None:
    print(f"\n{row['config']}: {row['params'] / 1e6:.2f}M parameters, {row['device']}, batch {row['batch_size']} x "
          f"block {row['block_size']} = {row['tokens_per_step']:,} tokens/step, compile {'on' if row['compile'] else 'off'}, "
          "measured matmul peak " + ", ".join(f"{d} {f / 1e9:,.1f}" for d, f in row["matmul_peak_flops"].items())
          + " GFLOP/s")
    print(f"  {'':8} {'dtype':>9} {'optimizer':>15} {'tok/s':>10} {'ms/step':>9} {'data':>8} {'fwd+bwd':>9} "
          f"{'optim':>8} {'MFU':>6} {'mem MiB':>8} {'final loss':>10}")
    for name, side in row["sides"].items():
        ms = side["ms"]
        print(f"  {name:8} {side['dtype']:>9} {side['optimizer']:>15} {side['tokens_per_s']:>10,.0f} "
              f"{side['ms_per_step']:>9.1f} {ms['data']:>8.2f} {ms['forward_backward']:>9.1f} {ms['optimizer']:>8.2f} "
              f"{100 * side['mfu']:>5.1f}% {side['memory_mb']:>8,.0f} {side['losses'][-1]:>10.4f}")
    print(f"  speedup {row['speedup']:.2f}x; largest loss difference over {len(row['sides']['slo']['losses'])} "
          f"steps: {row['max_loss_difference']:.2e}" + ("" if row["device"].startswith("cuda") else
                                                         "; memory is the process's peak RSS, shared by both"))
    if not row["same_data"]:
        print("  note: the dataset is sharded and the nanoGPT-style loop reads its first shard only, "
              "so the losses differ by design")
