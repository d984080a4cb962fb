"""modded-nanogpt's lessons as config keys: Muon beside AdamW, ReLU squared, zero-initialised projections,
logit soft-capping and per-group learning-rate scales; their checks, resume, export and sampling."""

from __future__ import annotations

import functools
import itertools
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import slo
from slo import cli
from slo.errors import RunError
from slo.runner.data.batches import Batches
from slo.runner.model import gpt as model_module
from slo.runner.checkpoint.store import load_checkpoint, model_from_checkpoint, save_checkpoint
from slo.runner.model.gpt import GPT, ModelArgs
from slo.runner.model.muon import MuonWithAdamW
from slo.runner.model.optimizers import make_optimizer, param_groups, parameter_roles, set_lr
from slo.runner.train_command import main
from slo.runner.trainer import Trainer
from tiny_run import metrics, tiny_config, tiny_model

REPO = Path(__file__).resolve().parent.parent
TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=32)
MUON = "TRAIN optimizer=muon\n"
CPU = torch.device("cpu")


tiny = functools.partial(tiny_model, TINY)  # tiny(seed, **options): a GPT of this file's shape


def tokens(rows: int = 2, length: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (rows, length), generator=torch.Generator().manual_seed(seed))


def names_of(model) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------- Muon's update


NS_COEFFICIENTS, NS_STEPS = (3.4445, -4.7750, 2.0315), 5  # torch.optim.Muon's defaults, which slo keeps
# Of the largest entry of a step's change: Muon iterates in bfloat16 and the reference in float64 (torch
# 2.13 on the CPU is off by up to 0.04 of it here; the same step without Nesterov is off by 0.35).
NS_TOLERANCE = 0.08


def newton_schulz(update: torch.Tensor) -> torch.Tensor:
    """The reference orthogonalisation: the quintic Newton-Schulz iteration, in float64, on the wide
    orientation of the matrix, after scaling it to unit Frobenius norm."""
    a, b, c = NS_COEFFICIENTS
    x = update.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / x.norm().clamp(min=1e-7)
    for _ in range(NS_STEPS):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def reference_step(weight, buffer, grad, lr, momentum, weight_decay, nesterov=True):
    """(the weight after one Muon step, the momentum buffer): decoupled decay, then the orthogonalised
    (Nesterov) momentum at lr * sqrt(max(1, rows / cols))."""
    buffer = momentum * buffer + grad.double()
    update = grad.double() + momentum * buffer if nesterov else buffer
    scale = math.sqrt(max(1.0, weight.shape[0] / weight.shape[1]))
    return weight.double() * (1 - lr * weight_decay) - lr * scale * newton_schulz(update), buffer


def test_muon_updates_equal_a_reference_newton_schulz():
    cfg = slo.loads("TRAIN optimizer=muon muon_lr=0.05 muon_momentum=0.9 muon_weight_decay=0.1 learning_rate=1e-3")
    model = tiny(n_embd=32)
    optimizer, _ = make_optimizer(model, cfg.train, CPU)
    watched = {n: p for n, p in model.named_parameters() if n.startswith("transformer.h.0.") and p.dim() == 2}
    assert sorted(watched) == [f"transformer.h.0.{m}.weight" for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                     "mlp.c_proj")]  # tall, square and wide
    buffers = {n: torch.zeros(p.shape, dtype=torch.float64) for n, p in watched.items()}
    generator = torch.Generator().manual_seed(3)
    for step in range(3):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=generator)
        set_lr(optimizer, 5e-4)  # half the peak: Muon at 0.05 / 2
        before = {n: p.detach().clone() for n, p in watched.items()}
        optimizer.step()
        for name, p in watched.items():
            previous = buffers[name]
            expected, buffers[name] = reference_step(before[name], previous, p.grad, 0.025, 0.9, 0.1)
            wrong, _ = reference_step(before[name], previous, p.grad, 0.025, 0.9, 0.1, nesterov=False)
            size = (expected - before[name]).abs().max()
            error = (p.detach().double() - expected).abs().max()
            assert error <= NS_TOLERANCE * size, (name, step, error / size)
            if step:  # at the first step Nesterov's update is the gradient's direction too
                assert (wrong - expected).abs().max() > 2 * NS_TOLERANCE * size  # the tolerance tells them apart


# ---------------------------------------------------------------- which optimizer has which parameter


@pytest.mark.parametrize("options", [{}, dict(tie_weights=False), dict(bias=True, tie_weights=False, qk_norm=True),
                                     dict(use_rope=True, use_rmsnorm=True, use_swiglu=True)],
                         ids=["tied", "untied", "biases-untied", "llama"])
def test_every_parameter_is_in_one_group_muon_has_the_hidden_matrices(options):
    model = tiny(**options)
    cfg = slo.loads(MUON + "TRAIN embedding_lr_scale=0.5" + ("" if model.args.tie_weights else " head_lr_scale=2")
                    + f"\nADVANCED tie_weights={model.args.tie_weights}")
    optimizer, _ = make_optimizer(model, cfg.train, CPU)
    assert isinstance(optimizer, MuonWithAdamW)
    names = names_of(model)
    placed = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    assert sorted(placed) == sorted(names.values())  # every parameter once, the tied head included
    muon = {names[id(p)] for group in optimizer.parts["muon"].param_groups for p in group["params"]}
    hidden = {n for n, p in model.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2}
    assert muon == hidden and all(n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) for n in muon)
    adamw = set(placed) - muon
    expected = {"transformer.wte.weight", *(() if model.args.use_rope else ("transformer.wpe.weight",)),
                *(() if model.args.tie_weights else ("lm_head.weight",))}
    assert {n for n in adamw if not n.endswith(("bias", "ln_1.weight", "ln_2.weight", "ln_f.weight",
                                                 "q_norm.weight", "k_norm.weight"))} == expected
    assert all(p.dim() == 2 for group in optimizer.parts["muon"].param_groups for p in group["params"])


def test_adamw_keeps_nanogpts_two_groups_by_default():
    model = tiny(tie_weights=False)
    groups = param_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and [g["lr_scale"] for g in groups] == [1.0, 1.0]
    assert groups[0]["params"] == [p for p in model.parameters() if p.dim() >= 2]
    roles = parameter_roles(model)
    assert [len(roles[r]) for r in ("embedding", "head")] == [2, 1]


# ---------------------------------------------------------------- the learning rates


def test_each_group_follows_the_schedule_times_its_scale(tmp_path):
    cfg = slo.load(tiny_config(tmp_path, extra=MUON + "TRAIN muon_lr=0.03 embedding_lr_scale=0.5 head_lr_scale=3\n"
                                                  "ADVANCED tie_weights=False\n"))
    trainer = Trainer(cfg)
    names = names_of(trainer.model)
    scale_of = {"transformer.wte.weight": 0.5, "transformer.wpe.weight": 0.5, "lm_head.weight": 3.0,
                "transformer.h.0.mlp.c_fc.weight": 0.03 / 1e-2, "transformer.h.1.ln_1.weight": 1.0}
    for it in range(10):
        lr = trainer.schedule(it)
        set_lr(trainer.optimizer, lr)
        for group in trainer.optimizer.param_groups:
            for p in group["params"]:
                if names[id(p)] in scale_of:
                    assert group["lr"] == pytest.approx(lr * scale_of[names[id(p)]], rel=1e-12), names[id(p)]
    assert trainer.schedule(7) < trainer.schedule(2)  # the schedule moves: warmup, then decay

    head, embedding = trainer.model.lm_head.weight, trainer.model.transformer.wte.weight
    before = {"head": head.detach().clone(), "embedding": embedding.detach().clone()}
    lr = trainer.schedule(0)
    trainer.train_step(lr, trainer.step_batches())  # AdamW's first step moves each weight by about its lr
    assert (head - before["head"]).abs().max().item() == pytest.approx(3 * lr, rel=0.02)
    assert (embedding - before["embedding"]).abs().max().item() == pytest.approx(0.5 * lr, rel=0.02)


# ---------------------------------------------------------------- resume


def test_a_muon_run_resumes_exactly(tmp_path):
    assert main([str(tiny_config(tmp_path, "whole", extra=MUON))]) == 0
    split = tiny_config(tmp_path, "split", extra=MUON)
    assert main([str(split), "--max_iters=4"]) == 0
    ckpt = load_checkpoint(tmp_path / "split" / "ckpt.pt")
    muon_state = ckpt["optimizer"]["muon"]["state"]
    assert set(ckpt["optimizer"]) == {"muon", "adamw"} and muon_state
    assert all(set(s) == {"momentum_buffer"} for s in muon_state.values())
    assert main([str(split), "--init_from=resume"]) == 0
    whole, split_metrics = metrics(tmp_path / "whole"), metrics(tmp_path / "split")
    assert sorted(whole[0]) == list(range(8)) and split_metrics == whole  # exact, step by step
    a, b = (load_checkpoint(tmp_path / run / "ckpt.pt")["model"] for run in ("whole", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("damage, message", [
    (lambda s: s["muon"]["state"][0].update(momentum_buffer=torch.zeros(3)),
     "Muon: a parameter's momentum_buffer is a float32 tensor of shape (3,)"),
    (lambda s: s["muon"]["state"][0].update(momentum_buffer=7), "momentum_buffer is a int, not a tensor"),
    (lambda s: s["muon"]["param_groups"][0].update(momentum="0.9"), "Muon: group 0's momentum is '0.9'"),
    (lambda s: s.pop("adamw"), "it holds muon, not the states of Muon and AdamW"),
])
def test_a_damaged_muon_state_is_a_one_line_error(tmp_path, capsys, damage, message):
    config = tiny_config(tmp_path, extra=MUON, max_iters=4)
    assert main([str(config)]) == 0
    path = tmp_path / "out" / "ckpt.pt"
    ckpt = load_checkpoint(path)
    damage(ckpt["optimizer"])
    save_checkpoint(path, ckpt)
    capsys.readouterr()
    assert main([str(config), "--init_from=resume", "--max_iters=6"]) == 1
    assert message in one_error(capsys)


def test_resuming_with_the_other_optimizer_is_a_one_line_error(tmp_path, capsys):
    config = tiny_config(tmp_path, max_iters=4)
    assert main([str(config), "--optimizer=muon"]) == 0
    capsys.readouterr()
    assert main([str(config), "--init_from=resume", "--max_iters=6"]) == 1
    assert "is that of optimizer=muon and this run has optimizer=adamw" in one_error(capsys)


def test_a_torch_without_muon_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(RunError, match=r"needs torch.optim.Muon, in torch 2\.9 or newer"):
        make_optimizer(tiny(), slo.loads(MUON).train, CPU)
    assert main([str(tiny_config(tmp_path, extra=MUON))]) == 1
    assert f"this is torch {torch.__version__}" in one_error(capsys)


def test_float16_skips_an_overflowing_step_in_both_optimizers(tmp_path):
    trainer = Trainer(slo.load(tiny_config(tmp_path, extra=MUON + "SYSTEM dtype=float16\n")))
    assert trainer.scaler.is_enabled() and "Muon + AdamW" in trainer.describe()
    loss = trainer.train_step(trainer.schedule(0), trainer.step_batches())  # a finite step goes through
    assert math.isfinite(loss)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    scale = trainer.scaler.get_scale()
    set_lr(trainer.optimizer, trainer.schedule(1))
    trainer._accumulate(trainer.step_batches())
    trainer.model.transformer.h[0].mlp.c_fc.weight.grad[0, 0] = float("inf")  # a Muon parameter overflows
    trainer.clip_gradients()
    trainer.optimizer_step()
    assert trainer.scaler.get_scale() < scale
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())  # AdamW's too


def test_two_ranks_train_muon_as_one_process_fed_both_ranks_batches(tmp_path):
    """DDP averages the gradients before the step, so Muon steps on one process's gradients (to float32
    rounding; equal to the bit here): the same tolerance as AdamW's in test_ddp.py."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tiny_config(tmp_path, "ddp", extra=MUON + "MODEL dropout=0.0\n", max_iters=4)
    proc = subprocess.run([sys.executable, "-m", "slo.runner", str(config), "--nproc_per_node=2",
                           f"--master_port={port}"], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    trainer = Trainer(slo.load(tiny_config(tmp_path, "one", extra=MUON + "MODEL dropout=0.0\n", max_iters=4)))
    d, seed = trainer.data_cfg, trainer.train_cfg.seed
    ranks = [Batches(trainer.dataset.train, d.batch_size, d.block_size, "cpu", seed=seed, rank=r) for r in (0, 1)]
    calls = itertools.count()
    trainer.next_batch = lambda: ranks[next(calls) % 2].next()  # micro-step 0: rank 0's batch; 1: rank 1's
    assert trainer.train().iter_num == 4
    ddp = load_checkpoint(tmp_path / "ddp" / "ckpt.pt")
    assert set(ddp["optimizer"]) == {"muon", "adamw"}
    one = trainer.model.state_dict()
    for name in one:
        torch.testing.assert_close(ddp["model"][name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    assert metrics(tmp_path / "ddp")[0] == pytest.approx(metrics(tmp_path / "one")[0], rel=1e-5)


# ---------------------------------------------------------------- the model options


def test_relu2_is_relu_squared():
    model = tiny(activation="relu2")
    mlp = model.transformer.h[0].mlp
    x = torch.randn(2, 8, 16)
    assert torch.equal(mlp(x), mlp.c_proj(F.relu(mlp.c_fc(x)) ** 2))
    gelu = tiny(activation="gelu").transformer.h[0].mlp
    assert not torch.allclose(gelu(x), mlp(x))  # the same weights (same seed), another function


def test_zero_init_proj_zeroes_the_projections_and_the_loss_still_falls(tmp_path):
    zero, plain = tiny(zero_init_proj=True, bias=True), tiny(bias=True)
    for (name, p), q in zip(zero.named_parameters(), plain.parameters()):
        if ".c_proj." in name:
            assert not p.any(), name
        else:
            assert torch.equal(p, q), name  # everything else has the same init
    assert main([str(tiny_config(tmp_path, extra="ADVANCED zero_init_proj=True\n"))]) == 0
    train, val = metrics(tmp_path / "out")
    assert train[7] < train[0] - 1 and val[8] < val[0] - 1
    trained = load_checkpoint(tmp_path / "out" / "ckpt.pt")["model"]
    assert trained["transformer.h.0.attn.c_proj.weight"].any() and trained["transformer.h.1.mlp.c_proj.weight"].any()


def capped_pair(cap: float) -> tuple[GPT, GPT]:
    """The same weights (made large, so that the logits pass the cap), uncapped and capped."""
    plain = tiny()
    with torch.no_grad():
        plain.lm_head.weight.mul_(200)
    capped = GPT(ModelArgs(**{**TINY, "logit_softcap": cap}))
    capped.load_state_dict(plain.state_dict())
    return plain.eval(), capped.eval()


def test_logit_softcap_bounds_the_logits_and_the_loss():
    plain, capped = capped_pair(2.0)
    idx = tokens()
    raw, _ = plain(idx)
    logits, loss = capped(idx, idx)
    assert raw.abs().max() > 10 and logits.abs().max() <= 2.0
    torch.testing.assert_close(logits, 2.0 * torch.tanh(raw / 2.0))
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 32), idx.reshape(-1)))
    huge = capped_pair(1e6)[1]
    torch.testing.assert_close(huge(idx)[0], raw, rtol=1e-6, atol=1e-5)  # a huge cap changes nothing


@pytest.mark.parametrize("use_cache", [True, False])
def test_sampling_draws_from_the_capped_logits(monkeypatch, use_cache):
    plain, capped = capped_pair(1.5)
    seen = []
    original = model_module.sample_next

    def spy(logits, *args):
        seen.append(logits)
        return original(logits, *args)

    monkeypatch.setattr(model_module, "sample_next", spy)
    idx = tokens(1, 3)
    capped.generate(idx, 4, temperature=1.0, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
    plain.generate(idx, 1, temperature=1.0, use_cache=use_cache)
    assert len(seen) == 5 and all(s.abs().max() <= 1.5 for s in seen[:4]) and seen[4].abs().max() > 10
    torch.testing.assert_close(seen[0], 1.5 * torch.tanh(seen[4] / 1.5))  # the same first step, capped


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize("setting, message", [
    ("TRAIN optimizer=sgd", "optimizer=sgd is out of range: must be one of adamw, muon"),
    ("TRAIN muon_lr=0", "muon_lr=0.0 is out of range: must be > 0"),
    ("TRAIN muon_momentum=1", "muon_momentum=1.0 is out of range: must be 0 <= x < 1"),
    ("TRAIN muon_weight_decay=-0.1", "muon_weight_decay=-0.1 is out of range: must be >= 0"),
    ("TRAIN embedding_lr_scale=0", "embedding_lr_scale=0.0 is out of range: must be > 0"),
    ("TRAIN head_lr_scale=-2 \nADVANCED tie_weights=False", "head_lr_scale=-2.0 is out of range: must be > 0"),
    ("ADVANCED logit_softcap=-1", "logit_softcap=-1.0 is out of range: must be >= 0"),
    ("ADVANCED zero_init_proj=yes", "zero_init_proj=yes is not a bool"),
    ("MODEL activation=relu3", "activation=relu3 is out of range: must be one of gelu, gelu_tanh, relu2"),
    ("MODEL activation=relu2 use_swiglu=True", "activation=relu2 has no effect with use_swiglu=True"),
    ("TRAIN head_lr_scale=2", "head_lr_scale=2.0 needs an untied head, but tie_weights=True"),
])
def test_bad_values_are_config_errors(write, slo_cli, setting, message):
    result = slo_cli("check", write("bad.config", setting + "\n"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_new_keys_are_valid_together(write, slo_cli):
    good = write("good.config", "MODEL activation=relu2\nADVANCED zero_init_proj=True logit_softcap=15 "
                                "tie_weights=False\nTRAIN optimizer=muon muon_lr=0.03 muon_momentum=0.9 "
                                "muon_weight_decay=0.01 embedding_lr_scale=5 head_lr_scale=0.5\n")
    result = slo_cli("check", good)
    assert result.returncode == 0, result.stderr
    cfg = slo.load(good)
    for fmt in ("toml", "py", "json"):  # every writer knows them
        assert all(key in slo.dumps(cfg, fmt) for key in ("optimizer", "muon_lr", "logit_softcap", "head_lr_scale"))


# ---------------------------------------------------------------- export and sampling


def export(*argv) -> int:
    return cli.main(["export", *map(str, argv)])


@pytest.mark.parametrize("options, named", [
    (dict(activation="relu2"), "activation=relu2"),
    (dict(logit_softcap=30.0), "logit_softcap=30"),
    (dict(logit_softcap=30.0, use_rope=True, use_rmsnorm=True, use_swiglu=True), "as Llama it has logit_softcap=30"),
])
def test_export_refuses_what_transformers_cannot_compute(tmp_path, capsys, options, named):
    pytest.importorskip("safetensors")
    model = tiny(**options)
    save_checkpoint(tmp_path / "ckpt.pt", {"model": model.state_dict(), "model_args": model.args.to_dict()})
    assert export(tmp_path, "-o", tmp_path / "hf") == 1
    assert named in one_error(capsys) and not (tmp_path / "hf").exists()


def test_a_muon_trained_run_exports_to_gpt2_with_the_same_logits(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    config = tiny_config(tmp_path, extra=MUON + "ADVANCED zero_init_proj=True\n", max_iters=4)
    assert main([str(config)]) == 0
    assert export(tmp_path / "out", "-o", tmp_path / "hf") == 0
    assert "(GPT2LMHeadModel)" in capsys.readouterr().out
    ours = model_from_checkpoint(load_checkpoint(tmp_path / "out")).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], theirs(idx).logits, rtol=0, atol=1e-5)


def test_sample_runs_with_every_option(tmp_path, capsys):
    extra = MUON + "MODEL activation=relu2\nADVANCED zero_init_proj=True logit_softcap=10 tie_weights=False\n" \
                   "TRAIN embedding_lr_scale=2 head_lr_scale=0.5\n"
    assert main([str(tiny_config(tmp_path, extra=extra, max_iters=2))]) == 0
    capsys.readouterr()
    assert cli.main(["sample", str(tmp_path / "out"), "--prompt", "def ", "--max_new_tokens", "20",
                     "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("def ")
