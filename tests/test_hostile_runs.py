"""Damaged and hostile files a run reads back, values that pass validation but not numpy or torch,
and the messages of what went wrong: a clear error or a note, never a traceback, nothing saved lost."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slo
from slo import atomic
from slo.errors import RunError
from slo.runner.checkpoint.store import load_checkpoint, save_checkpoint
from slo.runner.data.datasets import load_meta, write_dataset
from slo.outdir.files import read_records
from slo.runner.train_command import main as train_main
from tiny_run import make_dataset, tiny_config

RUNS = Path(__file__).parent / "data" / "hostile" / "runs"
REPO = Path(__file__).resolve().parent.parent


def train(config, *overrides) -> int:
    return train_main([str(config), *overrides])


def slo_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "slo.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 4-step tiny run (checkpoint at iter 4) to copy and damage."""
    root = tmp_path_factory.mktemp("finished")
    assert train(tiny_config(root, "run"), "--max_iters=4") == 0
    return root


def copy_run(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(config, out_dir) of a copy of the finished run, its config pointing at the copy."""
    shutil.copytree(finished / "run", tmp_path / "run")
    shutil.copytree(finished / "data", tmp_path / "data")
    return tiny_config(tmp_path, "run"), tmp_path / "run"


# ---------------------------------------------------------------- metrics.jsonl


def test_damaged_metrics_lines_never_block_a_resume(finished, tmp_path, capsys):
    config, out = copy_run(finished, tmp_path)
    good = (out / "metrics.jsonl").read_bytes()
    (out / "metrics.jsonl").write_bytes(good + (RUNS / "damaged_metrics.jsonl").read_bytes())
    assert train(config, "--init_from=resume", "--max_iters=6") == 0
    assert "damaged line(s)" in capsys.readouterr().out
    after = (out / "metrics.jsonl").read_bytes()
    assert after.startswith(good)  # every record of the first run kept, in place
    assert [r["iter"] for r in read_records(out / "metrics.jsonl") if "loss" in r] == list(range(6))


def test_reports_read_past_damaged_lines_and_huge_numbers(finished, tmp_path):
    _, out = copy_run(finished, tmp_path)
    with open(out / "metrics.jsonl", "ab") as f:
        f.write((RUNS / "damaged_metrics.jsonl").read_bytes())
    runs = slo_cli("runs", tmp_path)
    assert runs.returncode == 0 and "Traceback" not in runs.stderr and "4/4" in runs.stdout
    plot = slo_cli("plot", out, "-o", tmp_path / "p.png")
    assert plot.returncode in (0, 1) and "Traceback" not in plot.stderr
    assert "Traceback" not in slo_cli("diff", out, out).stderr


def test_a_huge_integer_in_config_json_is_a_clear_error(finished, tmp_path):
    _, out = copy_run(finished, tmp_path)
    (out / "config.json").write_text('{"max_iters": ' + "9" * 5000 + "}")
    runs = slo_cli("runs", tmp_path)
    assert "Traceback" not in runs.stderr and "Exceeds the limit" in runs.stdout + runs.stderr
    assert "set_int_max_str_digits" not in runs.stdout + runs.stderr  # the advice is for programmers


# ---------------------------------------------------------------- meta.json


@pytest.mark.parametrize("name, message", [
    ("meta_huge_int.json", "Exceeds the limit (4300 digits)"),
    ("meta_dtype_list.json", "dtype must be one of uint16, uint32, not ['uint16']"),
    ("meta_deep.json", "nested too deeply"),
])
def test_a_damaged_meta_json_is_a_clear_error(tmp_path, capsys, name, message):
    folder = make_dataset(tmp_path / "data")
    shutil.copy(RUNS / name, folder / "meta.json")
    with pytest.raises(RunError, match=re.escape(message)):
        load_meta(tmp_path / "data", "tiny")
    assert train(tiny_config(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and not (tmp_path / "out" / "ckpt.pt").exists()


# ---------------------------------------------------------------- checkpoint fields


@pytest.mark.parametrize("field, value, message", [
    ("iter_num", "x", "iter_num is 'x', not an integer"),
    ("iter_num", -5, "iter_num is -5, not an integer >= 0"),
    ("optimizer", "x", "optimizer is 'x', not an optimizer state dict"),
    ("optimizer", {"state": {}, "param_groups": "x"}, "optimizer state does not fit"),
    ("rng", {"torch": "x"}, "random states cannot be restored"),
    ("ranks", [1, 2], "ranks is list, not a list of each rank's"),
    ("best_val_loss", [1.0], "best_val_loss is list, not a number"),
    ("data", {"rng": "x", "drawn": 0}, "data position cannot be restored"),
    ("model_args", {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "dropout": 0.1, "vocab_size": 10 ** 12},
     "model_args of the checkpoint"),
])
def test_a_checkpoint_field_of_the_wrong_type_is_a_clear_error(finished, tmp_path, capsys, field, value, message):
    config, out = copy_run(finished, tmp_path)
    ckpt = load_checkpoint(out / "ckpt.pt")
    ckpt[field] = value
    save_checkpoint(out / "ckpt.pt", ckpt)
    saved = (out / "ckpt.pt").read_bytes()
    assert train(config, "--init_from=resume", "--max_iters=6") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert (out / "ckpt.pt").read_bytes() == saved


def test_absurd_model_args_in_a_checkpoint_are_refused_before_allocating(finished, tmp_path):
    _, out = copy_run(finished, tmp_path)
    ckpt = load_checkpoint(out / "ckpt.pt")
    ckpt["model_args"] = {**ckpt["model_args"], "n_embd": 4_000_000}
    save_checkpoint(out / "ckpt.pt", ckpt)
    r = slo_cli("sample", out, "--max_new_tokens=2")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "parameters" in r.stderr and "lower n_layer or n_embd" in r.stderr


# ---------------------------------------------------------------- messages that say what happened


def test_a_checkpoint_holding_a_blocked_global_is_named_so(tmp_path):
    class Hostile:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"model": {}, "payload": Hostile()}, tmp_path / "ckpt.pt")
    with pytest.raises(RunError) as info:
        load_checkpoint(tmp_path / "ckpt.pt")
    assert "holds a Python object (posix.system) that safe loading refuses" in str(info.value)
    assert "corrupt" not in str(info.value)


def test_a_full_disk_during_torch_save_says_the_disk_is_full(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ckpt.pt", {"model": {}, "iter_num": 1})

    def short_write(obj, f):
        f.write(b"PK" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 242688 vs 242580")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(RunError) as info:
        save_checkpoint(tmp_path / "ckpt.pt", {"model": {}, "iter_num": 2})
    assert "the disk is full or nearly" in str(info.value) and "unexpected pos" not in str(info.value)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "ckpt.pt")["iter_num"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_a_ckpt_pt_that_is_a_folder_is_named_as_one(tmp_path, capsys):
    config = tiny_config(tmp_path)
    (tmp_path / "out" / "ckpt.pt").mkdir(parents=True)
    assert train(config, "--init_from=resume") == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out' / 'ckpt.pt'} is a folder without a ckpt.pt" in err and "ckpt.pt/ckpt.pt" not in err


def test_float16_on_a_cpu_logs_mfu_below_100_percent(tmp_path):
    assert train(tiny_config(tmp_path), "--dtype=float16", "--max_iters=3") == 0
    mfus = [r["mfu"] for r in read_records(tmp_path / "out" / "metrics.jsonl") if r.get("mfu") is not None]
    assert mfus and all(0 < m < 1 for m in mfus)


# ---------------------------------------------------------------- values numpy and torch refuse


def test_a_seed_numpy_and_torch_refuse_is_a_config_error():
    for seed in ("-1", str(2 ** 32), "1e30"):
        with pytest.raises(slo.ConfigError, match=r"seed=\S+ is out of range: must be 0 <= x <= 4294967295"):
            slo.loads(f"TRAIN seed={seed}\n")
    assert slo.loads("TRAIN seed=4294967295\n")["seed"] == 2 ** 32 - 1


@pytest.mark.parametrize("override, advice", [
    ("--n_embd=2000000", "lower n_layer or n_embd"),
    ("--vocab_size=1e11", "lower vocab_size or n_embd"),
    ("--batch_size=1e8", "lower batch_size"),
])
def test_sizes_the_machine_cannot_allocate_get_one_line_advice(tmp_path, capsys, override, advice):
    assert train(tiny_config(tmp_path), override, "--n_head=1") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and advice in err and err.count("\n") == 1


def test_sampling_too_many_samples_at_once_gets_advice(finished):
    r = slo_cli("sample", finished / "run", "--num_samples=10000000000", "--max_new_tokens=2")
    assert r.returncode == 1 and "lower --num_samples" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("temperature", ["1e-320", "1e-45", "1e-30", "1e300"])
def test_sampling_is_stable_at_any_temperature(finished, temperature):
    r = slo_cli("sample", finished / "run", f"--temperature={temperature}", "--max_new_tokens=8", "--prompt=def")
    assert r.returncode == 0, r.stderr
    if float(temperature) < 1e-38:  # so small that it is greedy
        assert r.stdout == slo_cli("sample", finished / "run", "--temperature=0", "--max_new_tokens=8",
                                   "--prompt=def").stdout


def test_a_prompt_or_out_dir_that_is_not_utf8_is_a_clear_error(finished, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable.encode(), b"-m", b"slo.cli", *args], capture_output=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})

    r = run(b"sample", str(finished / "run").encode(), b"--prompt=a\xffb", b"--max_new_tokens=2")
    assert r.returncode == 1 and b"the prompt is not UTF-8 text (byte 0xff at character 2)" in r.stderr
    config = tiny_config(tmp_path)
    r = run(b"train", str(config).encode(), b"--out_dir=out\xff")
    assert r.returncode == 2 and b"This argument is not UTF-8 text" in r.stderr and b"Traceback" not in r.stderr
    assert not any(p.name.startswith("out") and p.is_dir() for p in tmp_path.iterdir())


# ---------------------------------------------------------------- temporary folders


def test_a_killed_prepare_leaves_nothing_the_next_one_keeps(tmp_path):
    data = tmp_path / "data"
    write_dataset(data / "d", [1, 2, 3], [4, 5], {"tokenizer": "byte", "vocab_size": 256})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that is gone
    (data / f".d.tmp-{dead}-abc").mkdir()
    (data / f".d.tmp-{dead}-abc" / "train.bin").write_bytes(b"\0" * 1000)
    live = data / f".d.tmp-{os.getppid()}-xyz"  # a writer still running: left alone
    live.mkdir()
    write_dataset(data / "d", [7, 8, 9], [1], {"tokenizer": "byte", "vocab_size": 256}, replace=True)
    assert sorted(p.name for p in data.iterdir()) == sorted(["d", live.name])
    assert load_meta(data, "d")["vocab_size"] == 256


def test_a_dataset_moved_aside_by_a_killed_writer_is_put_back(tmp_path):
    data = tmp_path / "data"
    write_dataset(data / "d", [1, 2, 3], [4, 5], {"tokenizer": "byte", "vocab_size": 256})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    aside = data / f".d.old-{dead}-abc"
    aside.mkdir()
    os.replace(data / "d", aside / "d")  # killed between its two renames: the dataset is only here
    atomic.sweep(data, "d")
    assert sorted(p.name for p in data.iterdir()) == ["d"] and (data / "d" / "train.bin").is_file()
