"""Shared fixtures: the two tokenizer twins, files in tmp dirs, the CLI, a hang guard."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import slo.lexer

# Deterministic by default (the same examples on every run); the "explore"
# profile (pytest --hypothesis-profile=explore) draws fresh ones on each run.
# No deadlines: the machine is small and shared, so an example's time says
# nothing; a real hang is caught by hang_guard.
settings.register_profile("slo", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", derandomize=False, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("slo")

REPO = Path(__file__).resolve().parent.parent
TOKENIZERS = {"py": "slo._parser_py", "c": "slo._parser"}


@pytest.fixture(params=["py", "c"])
def scan(request):
    """``scan`` of each tokenizer twin: the pure-Python one and the compiled one.

    The compiled one is skipped only when SLO_NO_EXTENSIONS asks for the twin;
    otherwise a missing extension is an error, never a skip.
    """
    if request.param == "c" and slo.lexer.NO_EXTENSIONS:
        pytest.skip("SLO_NO_EXTENSIONS is set: the compiled tokenizer is not used")
    return importlib.import_module(TOKENIZERS[request.param]).scan


@pytest.fixture
def write(tmp_path):
    """write(relative path, text) -> Path: a file under tmp_path (folders made as needed)."""
    def write_file(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path
    return write_file


def run_slo(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``python -m slo.cli ARGS`` in a subprocess, text captured."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "slo.cli", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def slo_cli():
    return run_slo


class Hang(Exception):
    """Raised by no_hang when the body runs past its time."""


@contextlib.contextmanager
def no_hang(seconds: float):
    """Turn a hang into a Hang exception (main thread, POSIX), so a test fails instead of stalling."""
    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Every test that runs torch runs it on one thread: tiny models gain nothing from a second,
    and on a busy machine they wait for it. A run of config-language tests alone never imports torch."""
    torch = sys.modules.get("torch")  # imported by now when any collected test module uses it
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def hang_guard():
    return no_hang
