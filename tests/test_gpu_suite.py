"""benchmarks/gpu_suite.sh in its dry mode: the GPU suite's plumbing, checked on any machine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_dry_suite_writes_every_result(tmp_path):
    out = tmp_path / "suite"
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--dry", str(out)], capture_output=True,
                       text=True, timeout=600, cwd=tmp_path, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for name in ("machine.json", "cuda-tests.xml", "profile.json", "summary.json", "summary.txt"):
        assert (out / name).is_file(), name
    assert "skipped" in (out / "cuda-tests.txt").read_text()  # no CUDA here: every cuda test skips, saying why
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["bench"]) == ["large", "small", "standard"]
    for bench in summary["bench"].values():
        sides = bench["configs"][0]["sides"]
        assert sides["slo"]["tokens_per_s"] > 0 and sides["nanogpt"]["tokens_per_s"] > 0
    profile = summary["profile"]
    assert profile["dry"] and profile["steps"] == 5 and profile["step_ms"] > 0 and profile["top_kernels"]
    assert "aten::mm" in {k["name"] for k in profile["top_kernels"]}
