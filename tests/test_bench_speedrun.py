"""benchmarks/bench_speedrun.py --quick: every run trained turn by turn, the table and the JSON it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench_module():
    if str(ROOT / "benchmarks") not in sys.path:  # as when run as a script: its folder on the path
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_speedrun", ROOT / "benchmarks" / "bench_speedrun.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("speedrun") / "result.json"
    bench = bench_module()
    assert bench.main(["--quick", "--lrs", "3e-3,1e-2", "--recipe", str(ROOT / "configs" / "speedrun-full.config"),
                       "--only", "muon,relu2", "--json", str(out)]) == 0
    return bench, json.loads(out.read_text())


def test_the_baseline_is_the_best_of_its_learning_rates_and_the_target_its_final_loss(quick):
    _, result = quick
    best = min(result["tuning"], key=result["tuning"].get)
    base = result["runs"][0]
    assert result["baseline"] == base["name"] == best  # trained again beside the others, the same losses
    assert result["target_val_loss"] == base["final_val_loss"] == result["tuning"][best]
    hit = base["reaches_baseline_final"]
    assert hit["step"] == result["steps"] and hit["speedup"] == pytest.approx(1.0)
    assert set(result["tuning"]) == {"baseline lr=3e-3", "baseline lr=1e-2"}


def test_every_run_trains_the_same_steps_and_is_evaluated_on_the_same_schedule(quick):
    _, result = quick
    steps = [s for s, _, _ in result["runs"][0]["curve"]]
    assert steps == [0, 4, 8, 12]
    for r in result["runs"]:
        assert r["steps"] == result["steps"] and [s for s, _, _ in r["curve"]] == steps
        seconds = [sec for _, sec, _ in r["curve"]]
        assert seconds == sorted(seconds) and seconds[0] == 0 and r["seconds"] == seconds[-1] > 0
        hit = r["reaches_baseline_final"]
        if hit is not None:  # the first evaluation at or below the target
            first = next(s for s, _, loss in r["curve"] if loss <= result["target_val_loss"])
            assert hit["step"] == first and hit["tokens"] == first * result["tokens_per_step"]


def test_each_option_of_the_recipe_is_measured_alone_and_removed(quick):
    bench, result = quick
    names = [r["name"] for r in result["runs"]]
    assert "candidate" in names
    alone = [n[2:] for n in names if n.startswith("+ ")]
    removed = [n[2:] for n in names if n.startswith("- ")]
    assert alone == removed == ["muon", "relu2"]
    table = bench.table(result)
    assert table.splitlines()[0].startswith("target: the baseline's final val loss")
    assert all(name in table for name in names)


def test_options_group_the_keys_of_the_recipe(tmp_path):
    import slo

    bench = bench_module()
    base = slo.load(ROOT / "configs" / "small.config")
    recipe = slo.loads("FROM small.config\nTRAIN optimizer=muon beta2=0.9\nMODEL activation=relu2\n",
                       path=ROOT / "configs" / "x.config")
    options = dict(bench.recipe_options(recipe, base))
    assert options == {"muon": {"optimizer": "muon"}, "relu2": {"activation": "relu2"}, "beta2": {"beta2": 0.9}}
