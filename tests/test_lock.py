"""One run per out_dir: a second run into a folder in use stops before touching it; a killed run leaves no lock."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from slo.cli import main as slo_main
from slo.errors import RunError
from slo.outdir.lock import RunLock, holder
from slo.runner.train_command import main
from tiny_run import metrics, sigterm_after_steps, tiny_config, wait_for_steps

REPO = str(Path(__file__).resolve().parent.parent)
LONG = ["--max_iters=100000", "--lr_decay_iters=100000", "--eval_interval=100000"]


def start_run(config, *overrides) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "slo.runner", str(config), *overrides], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_lock_is_exclusive_and_says_who_holds_it(tmp_path):
    with RunLock(tmp_path / "out"):
        found = holder(tmp_path / "out")
        assert found["pid"] == os.getpid()
        with pytest.raises(RunError, match=rf"out_dir .*out is in use by another run \(pid {os.getpid()}: .*\); "
                                           "wait for it to finish or stop it, or set out_dir to another folder"):
            RunLock(tmp_path / "out").acquire()
    assert holder(tmp_path / "out") is None
    with RunLock(tmp_path / "out"):  # free again
        pass


def test_a_second_run_into_a_busy_out_dir_refuses_and_changes_nothing(tmp_path, capsys):
    config = tiny_config(tmp_path, "run")
    out = tmp_path / "run"
    first = start_run(config, *LONG)
    try:
        wait_for_steps(first, out, 3)
        files = {name: (out / name).read_bytes() for name in ("config.json", "config.origins.json", "meta.json")}
        assert main([str(config), "--learning_rate=3e-3"]) == 1
        err = capsys.readouterr().err
        assert re.search(rf"error: out_dir {re.escape(str(out))} is in use by another run \(pid {first.pid}: ", err), err
        assert {name: (out / name).read_bytes() for name in files} == files
        assert not (out / "metrics.previous.jsonl").exists()  # the running run's metrics were not moved away
        assert slo_main(["runs", str(tmp_path)]) == 0
        assert "running" in capsys.readouterr().out
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, stderr
    train, _ = metrics(out)
    assert sorted(train) == list(range(len(train)))  # every step of the first run, in order, nothing lost
    assert holder(out) is None


def test_a_killed_run_leaves_no_lock(tmp_path):
    config = tiny_config(tmp_path, "run")
    out = tmp_path / "run"
    proc = start_run(config, *LONG)
    try:
        wait_for_steps(proc, out, 2)
        assert holder(out)["pid"] == proc.pid
        proc.kill()
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert holder(out) is None
    assert main([str(config), "--max_iters=2"]) == 0


def test_sigterm_to_a_locked_run_still_saves(tmp_path):
    config = tiny_config(tmp_path, "run")
    proc = start_run(config, *LONG)
    stdout, stderr = sigterm_after_steps(proc, tmp_path / "run", 2)
    assert proc.returncode == 143, stderr
    assert "SIGTERM: saved" in stdout and holder(tmp_path / "run") is None
