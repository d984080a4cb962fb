"""Time to loss: how soon a recipe reaches the validation loss of nanoGPT's, on the same data and machine.

    python benchmarks/bench_speedrun.py [--steps 400] [--eval_every 10] [--lrs 2e-3,4e-3,6e-3,1e-2]
                                        [--recipe configs/speedrun.config] [--no-ablations | --only NAMES]
                                        [--quick] [--json FILE]

The baseline is nanoGPT's recipe at configs/small.config's shape (AdamW,
cosine, GELU, LayerNorm, learned positions), trained at each of --lrs: the
one with the lowest final validation loss is the baseline, so that a gain is
not a mistuned baseline. The candidate is --recipe. The ablations are each
option of the recipe alone on the baseline, and the recipe without it (an
option is a group of keys, OPTIONS below; a key of the recipe in no group is
an option of its own).

Every run trains in this one process, all of them in turn one step each, so
a slow moment of the machine falls on all alike; each run's clock counts its
own training steps only. Every --eval_every steps each run is evaluated on
the same fixed validation windows (evenly spaced over val.bin, not timed).
Reported: parameters, final validation loss, and the seconds and tokens
until a run's validation loss first reaches the baseline's final one, with
the ratio to the baseline's whole training time. Prints tables, writes JSON
to benchmarks/results/ unless --json says otherwise. --quick: a tiny model
and a few steps, for tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import slo
from slo.schema import format_value
from resultfile import write_json  # benchmarks/resultfile.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = (  # option name -> the keys of the recipe that make it (those it sets)
    ("muon", ("optimizer", "muon_lr", "muon_momentum", "muon_weight_decay")),
    ("relu2", ("activation",)),
    ("zero-init projections", ("zero_init_proj",)),
    ("logit soft-cap", ("logit_softcap",)),
    ("untied head, own lrs", ("tie_weights", "embedding_lr_scale", "head_lr_scale")),
    ("wsd schedule", ("schedule", "cooldown_iters", "warmup_iters", "min_lr")),
    ("rope, rmsnorm, qk-norm", ("use_rope", "rope_theta", "use_rmsnorm", "qk_norm")),
)
BUDGET = ("max_iters", "lr_decay_iters", "eval_interval", "out_dir", "compile", "device", "dtype")
SMALL = ROOT / "configs" / "small.config"
QUICK = ("--n_layer=1", "--n_head=2", "--n_embd=32", "--batch_size=4", "--block_size=32")


def overrides(values: dict) -> list[str]:
    return [f"--{k}={format_value(v)}" for k, v in values.items()]


def recipe_options(recipe, baseline) -> list[tuple[str, dict]]:
    """(name, {key: the recipe's value}) per option: the keys the recipe file sets, grouped."""
    own = {k for k in recipe if recipe.is_set(k) and recipe[k] != baseline[k] and k not in BUDGET}
    out = []
    for name, keys in OPTIONS:
        keys = [k for k in keys if k in own]
        if keys:
            out.append((name, {k: recipe[k] for k in keys}))
            own -= set(keys)
    return out + [(k, {k: recipe[k]}) for k in sorted(own)]


class Run:
    """One side: a Trainer stepped by hand, its own clock, its validation losses."""

    def __init__(self, name: str, cfg, windows: int):
        from slo.runner.trainer import Trainer

        self.name, self.cfg = name, cfg
        self.trainer = Trainer(cfg)
        self.params = self.trainer.model.num_params(non_embedding=False)
        self.seconds, self.step = 0.0, 0
        self.curve: list[tuple[int, float, float]] = []  # (step, seconds, val loss)
        self.x, self.y = fixed_windows(self.trainer, windows)

    def train_step(self) -> None:
        t = self.trainer
        start = time.perf_counter()
        t.train_step(t.schedule(self.step), t.step_batches())
        self.seconds += time.perf_counter() - start
        self.step += 1
        t.progress.iter_num = self.step

    @torch.no_grad()
    def evaluate(self) -> None:
        model = self.trainer.model
        model.eval()
        losses = [model(x, y)[1].item() for x, y in zip(self.x.split(16), self.y.split(16))]  # equal chunks
        model.train()
        self.curve.append((self.step, self.seconds, float(np.mean(losses))))

    @property
    def final(self) -> float:
        return self.curve[-1][2]

    def reaches(self, target: float) -> tuple[int, float] | None:
        """(step, seconds) of the first evaluation at or below target."""
        return next(((s, sec) for s, sec, loss in self.curve if loss <= target), None)


def fixed_windows(trainer, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n windows of block_size + 1 tokens, evenly spaced over the validation split."""
    val, block = trainer.dataset.val, trainer.data_cfg.block_size
    starts = np.linspace(0, len(val) - block - 1, n).astype(np.int64)
    rows = np.stack([np.asarray(val[s:s + block + 1], dtype=np.int64) for s in starts])
    data = torch.from_numpy(rows).to(trainer.device)
    return data[:, :-1], data[:, 1:]


class Loader:
    """The configs of the runs: --steps, the CPU, float32 and the schedule's phases scaled to --steps."""

    def __init__(self, ns, folder: Path):
        self.ns, self.folder = ns, folder
        self.common = [f"--max_iters={ns.steps}", f"--lr_decay_iters={ns.steps}", "--compile=False",
                       "--device=cpu", "--dtype=float32", *(QUICK if ns.quick else ())]

    def __call__(self, path: Path, name: str, extra=()):
        own = slo.load(path, overrides=extra)
        scale = self.ns.steps / max(1, own["lr_decay_iters"])
        phases = [f"--warmup_iters={round(own['warmup_iters'] * scale)}"]
        if own["schedule"] == "wsd":
            phases.append(f"--cooldown_iters={max(1, round(own['cooldown_iters'] * scale))}")
        safe = "".join(c if c.isalnum() else "_" for c in name)
        return slo.load(path, overrides=[*self.common, *phases, f"--out_dir={self.folder / safe}", *extra])


def tuning_runs(ns, load: Loader) -> list[Run]:
    return [Run(f"baseline lr={lr}", load(SMALL, f"base{lr}", [f"--learning_rate={lr}"]), ns.windows)
            for lr in ns.lrs.split(",")]


def compared_runs(ns, load: Loader, lr: str) -> list[Run]:
    """The baseline at its best learning rate, the candidate, and each option alone and removed."""
    baseline = load(SMALL, "baseline", [f"--learning_rate={lr}"])
    recipe = load(ns.recipe, "candidate")
    runs = [Run(f"baseline lr={lr}", baseline, ns.windows), Run("candidate", recipe, ns.windows)]
    options = [] if ns.no_ablations else recipe_options(recipe, load(SMALL, "plain"))
    for name, values in [(n, v) for n, v in options if not ns.only or n in ns.only.split(",")]:
        runs.append(Run(f"+ {name}", load(SMALL, "alone " + name, [f"--learning_rate={lr}", *overrides(values)]),
                        ns.windows))
        back = {k: baseline[k] for k in values}
        runs.append(Run(f"- {name}", load(ns.recipe, "without " + name, overrides(back)), ns.windows))
    return runs


def train_all(runs: list[Run], steps: int, every: int) -> None:
    """Every run one step in turn, evaluations at step 0, every `every` steps and the last."""
    for run in runs:
        run.evaluate()
    for step in range(1, steps + 1):
        for run in runs:
            run.train_step()
        if step % every == 0 or step == steps:
            for run in runs:
                run.evaluate()
            best = min(r.final for r in runs)
            print(f"  step {step}/{steps}: best val {best:.4f}", file=sys.stderr, flush=True)


def report(runs: list[Run], ns, tuning: dict) -> dict:
    """The figures: runs[0] is the baseline, whose final validation loss is the target."""
    base = runs[0]
    target, tokens_per_step = base.final, base.trainer.tokens_per_iter
    rows = []
    for run in runs:
        hit = run.reaches(target)
        rows.append({"name": run.name, "params": run.params, "final_val_loss": run.final, "seconds": run.seconds,
                     "steps": run.step, "reaches_baseline_final": None if hit is None else {
                         "step": hit[0], "tokens": hit[0] * run.trainer.tokens_per_iter, "seconds": hit[1],
                         "speedup": base.seconds / hit[1] if hit[1] > 0 else None},
                     "curve": run.curve})
    return {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()},
            "steps": ns.steps, "eval_every": ns.eval_every, "windows": ns.windows, "recipe": str(ns.recipe),
            "tokens_per_step": tokens_per_step, "baseline": base.name, "target_val_loss": target,
            "tuning": tuning,
            "runs": rows}


def table(result: dict) -> str:
    lines = [f"target: the baseline's final val loss, {result['target_val_loss']:.4f} ({result['baseline']}, "
             f"{result['steps']} steps)",
             f"{'run':<34} {'params':>8} {'final val':>9} {'train s':>8}   reaches target at",
             "-" * 86]
    base_params = next(r["params"] for r in result["runs"] if r["name"] == result["baseline"])
    for r in result["runs"]:
        hit = r["reaches_baseline_final"]
        at = "never" if hit is None else (f"step {hit['step']}, {hit['tokens']:,} tokens, {hit['seconds']:.1f} s"
                                         + (f" ({hit['speedup']:.2f}x)" if hit["speedup"] else ""))
        share = f"{r['params'] / base_params - 1:+.0%}" if r["params"] != base_params else ""
        lines.append(f"{r['name']:<34} {r['params'] / 1e6:>7.3f}M {r['final_val_loss']:>9.4f} {r['seconds']:>8.1f}"
                     f"   {at}  {share}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval_every", type=int, default=10)
    p.add_argument("--windows", type=int, default=64, help="fixed validation windows evaluated each time")
    p.add_argument("--lrs", default="2e-3,4e-3,6e-3,1e-2", help="the baseline's learning rates; its best is the baseline")
    p.add_argument("--recipe", type=Path, default=ROOT / "configs" / "speedrun.config")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--only", metavar="NAMES", help="ablate only these options (comma list of their names)")
    p.add_argument("--quick", action="store_true", help="a tiny model and 12 steps (for tests)")
    p.add_argument("--json", type=Path)
    ns = p.parse_args(argv)
    if ns.quick:
        ns.steps, ns.eval_every, ns.windows = 12, 4, 4
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="slo-speedrun-") as folder:
        load = Loader(ns, Path(folder))
        tuning = tuning_runs(ns, load)
        print(f"tuning the baseline: {len(tuning)} learning rates, {ns.steps} steps each", file=sys.stderr, flush=True)
        train_all(tuning, ns.steps, ns.eval_every)
        best = min(tuning, key=lambda r: r.final).name.split("=", 1)[1]
        runs = compared_runs(ns, load, best)
        print(f"{len(runs)} runs, {ns.steps} steps each, turn by turn", file=sys.stderr, flush=True)
        train_all(runs, ns.steps, ns.eval_every)
    result = report(runs, ns, {r.name: r.final for r in tuning})
    print(table(result))
    write_json(result, "speedrun", ns.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
