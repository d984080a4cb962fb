"""The GPU path (marker ``cuda``): bfloat16, float16 with its scaler, fused AdamW, compile, SDPA's
kernels, resume, NCCL, checkpoints across devices, the KV cache, out of memory. Each test is skipped,
saying why, where CUDA is absent; ``benchmarks/gpu_suite.sh`` runs them on a card."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slo.runner.checkpoint.store import load_checkpoint
from slo.runner.model.gpt import GPT, ModelArgs
from slo.runner.sample import sample_from
from slo.runner.train_command import main as train_main
from slo.runner.trainer import Trainer
from tiny_run import metrics, tiny_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none is visible)")]

REPO = Path(__file__).resolve().parent.parent
GPU = "SYSTEM device=cuda dtype={dtype} compile={compile}\n"


def gpu_config(tmp_path, out="out", dtype="bfloat16", compile=False, max_iters=8):
    return tiny_config(tmp_path, out, extra=GPU.format(dtype=dtype, compile=compile), max_iters=max_iters)


def trainer_for(tmp_path, **kw) -> Trainer:
    import slo

    return Trainer(slo.load(gpu_config(tmp_path, **kw)))


def params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_bfloat16_train_step_runs_and_learns(tmp_path):
    trainer = trainer_for(tmp_path, dtype="bfloat16")
    assert trainer.device.type == "cuda" and trainer.dtype == torch.bfloat16
    losses = [trainer.train_step(1e-2, trainer.step_batches()) for _ in range(6)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_float16_overflowing_gradients_skip_the_step_and_lower_the_scale(tmp_path):
    trainer = trainer_for(tmp_path, dtype="float16")
    assert trainer.scaler.is_enabled()
    trainer.train_step(1e-2, trainer.step_batches())  # a normal step first
    trainer.scaler.update(new_scale=2.0 ** 100)  # gradients times 2**100 overflow float16
    before = params(trainer.model)
    trainer.train_step(1e-2, trainer.step_batches())
    after = params(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the step was skipped
    assert trainer.scaler.get_scale() < 2.0 ** 100


def test_fused_adamw_equals_the_foreach_one(tmp_path):
    torch.manual_seed(0)
    args = ModelArgs(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=256)
    a, b = GPT(args).cuda(), GPT(args).cuda()
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-2, fused=True)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2, foreach=True)
    x = torch.randint(0, 256, (4, 32), device="cuda")
    for _ in range(5):
        for model, opt in ((a, opt_a), (b, opt_b)):
            _, loss = model(x, x)
            loss.backward()
            opt.step()
            opt.zero_grad()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


def test_compile_trains_and_evaluates_on_cuda(tmp_path):
    trainer = trainer_for(tmp_path, compile=True)
    assert trainer.forwards.eval is not trainer.model  # compiled, not fallen back
    loss = trainer.train_step(1e-2, trainer.step_batches())
    losses = trainer.evaluate()
    assert trainer.forwards.eval is not trainer.model and torch.isfinite(torch.tensor([loss, *losses.values()])).all()


@pytest.mark.parametrize("config", ["small", "standard", "large"])
def test_sdpa_uses_a_fused_kernel_for_the_shipped_configs(config):
    import slo
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg = slo.load(REPO / "configs" / f"{config}.config", overrides=["--device=cuda"])
    args = ModelArgs(**{**ModelArgs.from_config(cfg, 50304).to_dict(), "n_layer": 1, "dropout": 0.0})
    model = GPT(args).cuda()
    x = torch.randint(0, 50304, (2, args.block_size), device="cuda")
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]), \
            torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = model(x, x)  # raises when only the math fallback could run
        loss.backward()
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), torch.autocast("cuda", dtype=torch.bfloat16):
        _, reference = model(x, x)
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-2)  # the fused kernel computes what the math one does


def test_resume_on_cuda_continues_the_same_losses(tmp_path):
    """Not bitwise: cuBLAS and SDPA's backward may reduce in another order from run to run (atomics), so
    the losses agree to a relative 1e-3 after four float32 steps, not exactly."""
    assert train_main([str(gpu_config(tmp_path, "whole", dtype="float32"))]) == 0
    assert train_main([str(gpu_config(tmp_path, "split", dtype="float32")), "--max_iters=4"]) == 0
    assert train_main([str(gpu_config(tmp_path, "split", dtype="float32")), "--init_from=resume"]) == 0
    whole, _ = metrics(tmp_path / "whole")
    split, _ = metrics(tmp_path / "split")
    assert sorted(whole) == sorted(split)
    for step in whole:
        assert abs(whole[step] - split[step]) <= 1e-3 * abs(whole[step]), step


def test_ddp_over_nccl_on_one_gpu_through_torchrun(tmp_path):
    torchrun = shutil.which("torchrun") or [sys.executable, "-m", "torch.distributed.run"]
    command = ([torchrun] if isinstance(torchrun, str) else torchrun) + [
        "--standalone", "--nproc_per_node=1", "-m", "slo.runner", str(gpu_config(tmp_path)), "--backend=nccl"]
    r = subprocess.run(command, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "backend nccl" in r.stdout and load_checkpoint(tmp_path / "out" / "ckpt.pt")["iter_num"] == 8


@pytest.mark.parametrize("offload", [False, True])
def test_fsdp_over_nccl_on_one_gpu_through_torchrun(tmp_path, offload):
    """strategy=fsdp in a group of one (sharding nothing, but every FSDP2 hook, the bfloat16 policy,
    compiled blocks and, with offload, the CPU-resident shards run), a sharded checkpoint, and resume."""
    torchrun = shutil.which("torchrun") or [sys.executable, "-m", "torch.distributed.run"]
    keys = [str(gpu_config(tmp_path, compile=not offload)), "--backend=nccl", "--strategy=fsdp", "--checkpoint_format=sharded",
            f"--fsdp_cpu_offload={offload}"]
    command = ([torchrun] if isinstance(torchrun, str) else torchrun) + [
        "--standalone", "--nproc_per_node=1", "-m", "slo.runner", *keys]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(command + ["--max_iters=4"], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "fsdp over 1 rank," in r.stdout and "shards nothing" in r.stdout
    r = subprocess.run(command + ["--init_from=resume"], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(tmp_path / "out")["iter_num"] == 8


def test_checkpoints_move_between_cuda_and_cpu(tmp_path):
    from types import SimpleNamespace

    assert train_main([str(gpu_config(tmp_path, "gpu"))]) == 0
    assert train_main([str(tiny_config(tmp_path, "cpu"))]) == 0

    def sample(out, device):
        ns = SimpleNamespace(out_dir=str(tmp_path / out), prompt="def", max_new_tokens=8, temperature=0.0, top_k=0,
                             num_samples=1, seed=1, device=device, dtype="float32", data_dir=None)
        return sample_from(ns)

    assert sample("gpu", "cpu")[0].startswith("def") and sample("cpu", "cuda")[0].startswith("def")


def test_the_kv_cache_gives_the_same_tokens_on_cuda():
    torch.manual_seed(0)
    model = GPT(ModelArgs(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=256, use_rope=True)).cuda().eval()
    prompt = torch.randint(0, 256, (3, 5), device="cuda")
    with torch.no_grad():
        cached = model.generate(prompt, 40, temperature=0, use_cache=True)  # past block_size: crops and recomputes
        plain = model.generate(prompt, 40, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)


def test_out_of_memory_at_a_huge_batch_is_one_line_of_advice(tmp_path, capsys):
    assert train_main([str(gpu_config(tmp_path)), "--batch_size=10000000", "--block_size=16"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lower batch_size" in err and err.count("\n") == 1
