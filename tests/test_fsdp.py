"""strategy=fsdp on the CPU with gloo and 2 processes: the same weights as DDP, checkpoints one
process reads (ckpt.pt and sharded folders), exact resume, resume on another number of processes,
a save killed mid-write, a failed rank, and the config's rules."""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import slo
from slo.errors import ConfigError
from slo.runner.checkpoint.store import load_checkpoint, model_from_checkpoint
from slo.cli import main as slo_main
from slo.runner.train_command import main
from slo.runner.trainer import Trainer
from test_checkpoint import Payload
from test_ddp import RUN_TIMEOUT, environment, train_ddp, weights
from test_nanogpt_checkpoint import NANOGPT_FIELDS
from tiny_run import metrics, tiny_config

FSDP = ("--strategy=fsdp",)
SHARDED = ("--strategy=fsdp", "--checkpoint_format=sharded")
# FSDP reduce-scatters the gradients where DDP all-reduces them: the same sums in another order, so the
# weights agree to float32 rounding after a few steps, not bit for bit.
TOLERANCE = dict(rtol=1e-4, atol=1e-6)


def close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], **TOLERANCE) for k in a)


def test_fsdp_weights_equal_ddp_weights_after_the_same_steps(tmp_path):
    """DDP's weights equal one process's fed both ranks' batches (test_ddp); FSDP's equal DDP's."""
    fixed = ("--dropout=0.0",)
    assert train_ddp(tiny_config(tmp_path, "ddp", max_iters=4), *fixed).returncode == 0
    proc = train_ddp(tiny_config(tmp_path, "fsdp", max_iters=4), *fixed, *FSDP)
    assert proc.returncode == 0, proc.stderr
    assert "data-parallel (fsdp): 2 ranks" in proc.stdout and "fsdp over 2 ranks" in proc.stdout
    assert close(weights(tmp_path / "fsdp"), weights(tmp_path / "ddp"))
    (fsdp_loss, fsdp_val), (ddp_loss, ddp_val) = metrics(tmp_path / "fsdp"), metrics(tmp_path / "ddp")
    assert fsdp_loss.keys() == ddp_loss.keys() and all(abs(fsdp_loss[k] - ddp_loss[k]) < 1e-4 for k in ddp_loss)
    assert all(abs(fsdp_val[k] - ddp_val[k]) < 1e-4 for k in ddp_val)  # the ranks share the evaluation
    ckpt = load_checkpoint(tmp_path / "fsdp" / "ckpt.pt")  # gathered whole, in one process's format
    ddp_ckpt = load_checkpoint(tmp_path / "ddp" / "ckpt.pt")
    assert ckpt["optimizer"]["param_groups"] == ddp_ckpt["optimizer"]["param_groups"]
    for index, state in ddp_ckpt["optimizer"]["state"].items():
        assert torch.allclose(ckpt["optimizer"]["state"][index]["exp_avg"], state["exp_avg"], **TOLERANCE)


def test_a_sharded_checkpoint_samples_and_exports_in_one_process(tmp_path, capsys):
    assert train_ddp(tiny_config(tmp_path, "single", max_iters=4), *FSDP).returncode == 0
    assert train_ddp(tiny_config(tmp_path, "sharded", max_iters=4), *SHARDED).returncode == 0
    folder = tmp_path / "sharded" / "ckpt.sharded"
    assert folder.is_dir() and not (tmp_path / "sharded" / "ckpt.pt").exists()
    ckpt = load_checkpoint(tmp_path / "sharded")  # the out_dir: its latest checkpoint, assembled whole
    assert ckpt["iter_num"] == 4 and len(ckpt["ranks"]) == 2
    full = weights(tmp_path / "single")
    assert all(torch.equal(ckpt["model"][k], full[k]) for k in full)  # the same run, saved either way
    model_from_checkpoint(ckpt)
    for run in ("single", "sharded"):
        assert slo_main(["sample", str(tmp_path / run), "--max_new_tokens=8", "--seed=1"]) == 0
        assert slo_main(["export", str(tmp_path / run), "-o", str(tmp_path / f"{run}-hf")]) == 0
    assert (tmp_path / "sharded-hf" / "config.json").is_file()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("fmt", [FSDP, SHARDED], ids=["ckpt.pt", "sharded"])
def test_fsdp_resume_with_the_same_world_size_continues_the_same_losses(tmp_path, fmt):
    assert train_ddp(tiny_config(tmp_path, "whole", max_iters=6), *fmt).returncode == 0
    split = tiny_config(tmp_path, "split", max_iters=6)  # dropout=0.1: each rank's generator is restored too
    assert train_ddp(split, *fmt, "--max_iters=3").returncode == 0
    resumed = train_ddp(split, *fmt, "--init_from=resume")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout and "note:" not in resumed.stdout
    (split_loss, _), (whole_loss, _) = metrics(tmp_path / "split"), metrics(tmp_path / "whole")
    assert split_loss == whole_loss  # exact, step by step
    a, b = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(tmp_path / "split")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_two_process_checkpoint_resumes_in_one_process_with_a_note(tmp_path, capsys):
    config = tiny_config(tmp_path, "run", max_iters=6)
    assert train_ddp(config, *SHARDED, "--max_iters=3").returncode == 0
    capsys.readouterr()
    assert main([str(config), "--init_from=resume", "--max_iters=4", *SHARDED]) == 0
    out = capsys.readouterr().out
    assert "written by 2 process(es) and this run has 1" in out and "differs from an uninterrupted run" in out
    assert "strategy=fsdp with one process shards nothing" in out
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["iter_num"] == 4
    # the optimizer continued the saved state: AdamW's step count went on from 3
    model = model_from_checkpoint(ckpt)
    cfg = slo.load(config, overrides=["--init_from=resume", "--max_iters=4", *SHARDED])
    trainer = Trainer(cfg)
    assert all(float(s["step"]) == 4 for s in trainer.optimizer.state.values())
    assert all(torch.equal(p, model.state_dict()[n]) for n, p in trainer.model.state_dict().items())


def test_a_one_process_checkpoint_resumes_in_two_with_a_note_either_strategy(tmp_path):
    config = tiny_config(tmp_path, "one", max_iters=6)
    assert main([str(config), "--max_iters=3"]) == 0
    for name, strategy in (("ddp", ()), ("fsdp", SHARDED)):
        run = tmp_path / name
        run.mkdir()
        (run / "ckpt.pt").write_bytes((tmp_path / "one" / "ckpt.pt").read_bytes())
        proc = train_ddp(config, f"--out_dir={run}", "--init_from=resume", "--max_iters=5", "--dropout=0.0",
                         *strategy)
        assert proc.returncode == 0, proc.stderr
        assert "written by 1 process(es) and this run has 2" in proc.stdout
    ddp, fsdp = load_checkpoint(tmp_path / "ddp"), load_checkpoint(tmp_path / "fsdp")
    assert ddp["iter_num"] == fsdp["iter_num"] == 5
    # the same weights and optimizer state loaded, the same re-derived data streams: the same steps
    assert close(fsdp["model"], ddp["model"])


KILL_SAVE = """
import os, signal, sys
from slo.runner.checkpoint import sharded
from slo.runner.train_command import main
real = sharded._swap_in
def killed(new, folder):
    if folder.exists():  # the second save: die with its folder written, before (or between) the renames
        if sys.argv[1] == "between":
            old = sharded.atomic.make_dir(folder.parent, folder.name, "old")
            os.rename(folder, old / folder.name)
        os.kill(os.getpid(), signal.SIGKILL)
    real(new, folder)
sharded._swap_in = killed
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("when", ["before", "between"])
def test_a_sharded_save_killed_mid_write_leaves_the_previous_one_loadable(tmp_path, when):
    config = tiny_config(tmp_path, "run", max_iters=8)
    proc = subprocess.run([sys.executable, "-c", KILL_SAVE, when, str(config), *SHARDED], env=environment(),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(tmp_path / "run")["iter_num"] == 4  # the first save; the second never landed
    assert main([str(config), "--init_from=resume", *SHARDED]) == 0  # and the run goes on from it
    assert load_checkpoint(tmp_path / "run")["iter_num"] == 8
    assert [p.name for p in (tmp_path / "run").iterdir() if "ckpt.sharded" in p.name] == ["ckpt.sharded"]


def test_a_failed_rank_under_fsdp_ends_the_run(tmp_path):
    config = tiny_config(tmp_path, "run", max_iters=100000)
    proc = train_ddp(config, "--lr_decay_iters=100000", "--eval_interval=100000", *FSDP,
                     env={"SLO_TEST_FAIL_AT": "1:2"})  # the subprocess has RUN_TIMEOUT to end
    assert proc.returncode == 1
    assert re.search(r"error: rank 1 \(pid \d+\) failed: SLO_TEST_FAIL_AT made rank 1 fail at iter 2", proc.stderr)


def test_fsdp_trains_in_bfloat16_with_compiled_blocks_and_activation_checkpointing(tmp_path):
    proc = train_ddp(tiny_config(tmp_path, "run", max_iters=2), *FSDP, "--fsdp_cpu_offload=True",
                     "--fsdp_reshard_after_forward=False", "--dtype=bfloat16", "--compile=True", "--eval_iters=1",
                     "--activation_checkpointing=True")
    assert proc.returncode == 0, proc.stderr
    assert "bfloat16, compiled, fsdp over 2 ranks" in proc.stdout
    assert "this run is on the CPU already, so nothing is offloaded" in proc.stdout  # CUDA offloads: test_cuda
    train_loss, val_loss = metrics(tmp_path / "run")
    assert len(train_loss) == 2 and all(torch.isfinite(torch.tensor(list(val_loss.values()))))


@pytest.mark.parametrize("overrides, message", [
    (("--strategy=fsdp", "--optimizer=muon"), "optimizer=muon needs each weight matrix whole"),
    (("--fsdp_cpu_offload=True",), "fsdp_cpu_offload=True only applies to strategy=fsdp, not strategy=ddp"),
    (("--fsdp_reshard_after_forward=False",), "fsdp_reshard_after_forward=False only applies to strategy=fsdp"),
    (("--checkpoint_format=sharded",), "checkpoint_format=sharded only applies to strategy=fsdp"),
    (("--strategy=zero",), "strategy"),
])
def test_the_fsdp_keys_rules(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        slo.load(tiny_config(tmp_path), overrides=list(overrides))
    slo.load(tiny_config(tmp_path), overrides=["--strategy=fsdp", "--fsdp_cpu_offload=True",
                                               "--checkpoint_format=sharded", "--fsdp_reshard_after_forward=False"])


@settings(max_examples=40, deadline=None)
@given(strategy=st.sampled_from(["ddp", "fsdp"]), reshard=st.booleans(), offload=st.booleans(),
       fmt=st.sampled_from(["single", "sharded"]))
def test_the_fsdp_keys_are_errors_exactly_where_they_cannot_apply(strategy, reshard, offload, fmt):
    """Any fsdp-only key away from its inert value is an error under ddp, and never under fsdp."""
    text = (f"DDP strategy={strategy} fsdp_reshard_after_forward={reshard} fsdp_cpu_offload={offload}\n"
            f"LOGGING checkpoint_format={fmt}\n")
    applies_only_to_fsdp = not reshard or offload or fmt == "sharded"
    try:
        slo.loads(text)
    except ConfigError as e:
        assert strategy == "ddp" and applies_only_to_fsdp and "only applies to strategy=fsdp" in str(e)
    else:
        assert strategy == "fsdp" or not applies_only_to_fsdp


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """A 2-process run that saved a sharded checkpoint at iter 3 (its config, its out_dir), copied by each test."""
    root = tmp_path_factory.mktemp("sharded")
    config = tiny_config(root, "run", max_iters=6)
    assert train_ddp(config, *SHARDED, "--max_iters=3").returncode == 0
    return config, root / "run"


@pytest.mark.parametrize("name, damage", [("__1_0.distcp", "delete"), ("__0_0.distcp", "truncate"),
                                          ("trainer.pt", "delete"), ("trainer.pt", "truncate"),
                                          (".metadata", "delete"), (".metadata", "truncate")])
def test_a_damaged_sharded_checkpoint_is_one_line_naming_the_file_from_every_command(sharded_run, tmp_path, capsys,
                                                                                    name, damage):
    config, saved = sharded_run
    run = tmp_path / "run"
    shutil.copytree(saved, run)
    path = run / "ckpt.sharded" / name
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    said = "is missing" if damage == "delete" else "is cut short" if name.endswith(".distcp") else "corrupt"
    folder = f"the sharded checkpoint {run / 'ckpt.sharded'} is damaged: "
    proc = train_ddp(config, f"--out_dir={run}", "--init_from=resume", *SHARDED)  # asserts no traceback
    [line] = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and folder in line and name in line and said in line, proc.stderr
    capsys.readouterr()
    commands = [lambda: main([str(config), f"--out_dir={run}", "--init_from=resume", *SHARDED]),
                lambda: main([str(config), f"--out_dir={tmp_path / 'tuned'}", f"--init_from={run}"]),
                lambda: slo_main(["sample", str(run), "--max_new_tokens=4"]),
                lambda: slo_main(["export", str(run), "-o", str(tmp_path / "hf")])]
    for command in commands:
        assert command() == 1
        err = capsys.readouterr().err
        [line] = err.strip().splitlines()
        assert line.startswith("error: " + folder) and name in line and said in line and "Traceback" not in err
    assert "copy the whole folder again" in line and "init_from=scratch" in line


def test_a_sharded_checkpoint_whose_index_or_shard_would_run_a_command_is_refused_and_never_run(sharded_run,
                                                                                                tmp_path, capsys):
    _, saved = sharded_run
    marker = tmp_path / "ran"
    index, shard = tmp_path / "index", tmp_path / "shard"
    for run in (index, shard):
        shutil.copytree(saved, run)
    (index / "ckpt.sharded" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    folder = shard / "ckpt.sharded"  # a weight's bytes: such a pickle, appended to its file, the index pointing at it
    with open(folder / ".metadata", "rb") as f:
        metadata = pickle.load(f)  # the test's own file
    key, item = next((k, v) for k, v in metadata.storage_data.items() if k.fqn.startswith("model."))
    blob = io.BytesIO()
    torch.save(Payload(marker), blob)
    path = folder / item.relative_path
    metadata.storage_data[key] = dataclasses.replace(item, offset=path.stat().st_size, length=len(blob.getvalue()))
    with open(path, "ab") as f:
        f.write(blob.getvalue())
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    for run, where in ((index, "its index .metadata"), (shard, "a shard")):
        assert slo_main(["sample", str(run), "--max_new_tokens=4"]) == 1
        err = capsys.readouterr().err
        assert f"{where} holds a Python object (posix.system) that safe loading refuses" in err
        assert "weights_only" not in err and "Traceback" not in err
    assert not marker.exists()
    metadata.storage_data[key] = dataclasses.replace(item, relative_path="../../elsewhere.distcp")
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))  # an index naming a file outside its folder
    assert slo_main(["sample", str(shard), "--max_new_tokens=4"]) == 1
    assert "its index .metadata names a shard outside the folder ('../../elsewhere.distcp')" in capsys.readouterr().err


def test_a_sharded_checkpoint_of_a_nanogpt_shaped_model_keeps_nanogpt_s_model_args(sharded_run):
    _, saved = sharded_run
    info = torch.load(saved / "ckpt.sharded" / "trainer.pt", weights_only=True)
    assert set(info["model_args"]) == NANOGPT_FIELDS
    ckpt = load_checkpoint(saved)  # read back whole, the keys left out at their defaults
    args = model_from_checkpoint(ckpt).args
    assert args.n_kv_head == 2 and not args.use_rope and args.n_layer == 2
