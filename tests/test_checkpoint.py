"""Checkpoints: atomic saves that survive SIGKILL, clear errors for bad files, nanoGPT's ckpt.pt."""

from __future__ import annotations

import collections
import datetime
import decimal
import multiprocessing
import os
import signal
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from slo.errors import RunError
from slo.runner.checkpoint import store as ckpt_module
from slo.runner.checkpoint.store import check_compatible, load_checkpoint, model_from_checkpoint, save_checkpoint
from slo.runner.model.gpt import GPT, ModelArgs
from test_data import _Exploit as Payload  # a pickle that runs a shell command when unpickled

TINY = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=64)


def trainer_state(model: GPT, iter_num: int = 3) -> dict:
    """What the trainer saves: nanoGPT's keys and exact-resume extras, tensors and plain values only."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    idx = torch.randint(0, 64, (2, 16))
    model(idx, idx)[1].backward()
    opt.step()
    return {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "model_args": model.args.to_dict(),
        "iter_num": iter_num, "best_val_loss": 2.5, "config": {"dataset": "builtin", "data_dir": "data", "n_layer": 2},
        "rng": {"torch": torch.get_rng_state(), "numpy": torch.tensor([1, 2, 3])}, "scaler": None,
        "schema_version": 1,
    }


def temp_files(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- saving


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = GPT(ModelArgs(**TINY))
    state = trainer_state(model)
    path = tmp_path / "run" / "ckpt.pt"  # the folder is made
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["iter_num"] == 3 and loaded["config"]["dataset"] == "builtin"
    assert torch.equal(loaded["rng"]["torch"], state["rng"]["torch"])
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert load_checkpoint(tmp_path / "run")["iter_num"] == 3  # a folder means its ckpt.pt
    rebuilt = model_from_checkpoint(loaded).eval()
    idx = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(rebuilt(idx)[0], model.eval()(idx)[0], rtol=0, atol=0)
    assert rebuilt.transformer.wte.weight is rebuilt.lm_head.weight
    assert temp_files(tmp_path / "run") == []


def test_a_save_that_dies_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "iter_num": 1})

    def dies_after_some_bytes(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # Ctrl-C, or anything else, in the middle of writing

    monkeypatch.setattr(ckpt_module.torch, "save", dies_after_some_bytes)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model": {"w": torch.ones(3)}, "iter_num": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["iter_num"] == 1
    assert temp_files(tmp_path) == []


def test_the_new_file_replaces_the_old_one_by_rename(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        assert os.path.getsize(src) > 0 and os.path.dirname(src) == os.path.dirname(dst)
        renames.append((os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_module.os, "replace", spy)
    save_checkpoint(path, {"model": {}, "iter_num": 7})
    assert len(renames) == 1 and renames[0][1] == "ckpt.pt" and renames[0][0].startswith(".ckpt.pt.tmp-")


def save_forever(path, payload, ready) -> None:
    """Save checkpoints numbered 1, 2, ... to path until killed; say when the first is done.

    It runs in a forked copy of the test process, so it only serialises tensors made
    before the fork (a forked child must not enter the parent's thread pool)."""
    i = 0
    while True:
        i += 1
        save_checkpoint(path, {"model": {"w": payload, "number": torch.tensor(i)}, "iter_num": i})
        if i == 1:
            ready.set()


def test_sigkill_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path, hang_guard):
    path = tmp_path / "ckpt.pt"
    payload = torch.randn(4_000_000)  # 16 MB: most of a save is spent writing it
    save_checkpoint(path, {"model": {"w": payload, "number": torch.tensor(0)}, "iter_num": 0})
    fork = multiprocessing.get_context("fork")  # a copy of this process: no second torch import
    for delay in (0.0, 0.03, 0.07):
        with hang_guard(120):
            ready = fork.Event()
            saver = fork.Process(target=save_forever, args=(path, payload, ready), daemon=True)
            saver.start()
            assert ready.wait(60), "the saving process did not finish its first save"
            time.sleep(delay)  # the kill lands in a later save
            os.kill(saver.pid, signal.SIGKILL)
            saver.join()
        assert saver.exitcode == -signal.SIGKILL
        ckpt = load_checkpoint(path)
        assert ckpt["model"]["number"] == ckpt["iter_num"] and torch.equal(ckpt["model"]["w"], payload)
    save_checkpoint(path, {"model": {}, "iter_num": 99})  # the next save clears the dead savers' temp files
    assert temp_files(tmp_path) == []
    assert load_checkpoint(path)["iter_num"] == 99


def test_a_temp_file_of_a_live_saver_is_left_alone(tmp_path):
    live = tmp_path / f".ckpt.pt.tmp-{os.getppid()}-abcd"
    live.write_bytes(b"in progress")
    save_checkpoint(tmp_path / "ckpt.pt", {"model": {}})
    assert live.exists()


def test_a_full_disk_while_saving_is_a_run_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "iter_num": 1})

    def disk_full(obj, f):  # what torch.save raises when the disk fills midway
        f.write(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 182016 vs 181904")

    monkeypatch.setattr(ckpt_module.torch, "save", disk_full)
    with pytest.raises(RunError, match="could not write checkpoint .* free some disk space"):
        save_checkpoint(path, {"model": {"w": torch.ones(3)}, "iter_num": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["iter_num"] == 1
    assert temp_files(tmp_path) == []


def test_an_unwritable_destination_is_a_run_error(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("a file where the out_dir should be")
    with pytest.raises(RunError, match="could not write checkpoint"):
        save_checkpoint(blocker / "ckpt.pt", {"model": {}})


# ---------------------------------------------------------------- loading bad files


def test_a_missing_checkpoint_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="no checkpoint at .*out: train a model first"):
        load_checkpoint(tmp_path / "out")


@pytest.mark.parametrize("keep", [0, 10, 0.5, -8])
def test_a_truncated_checkpoint_is_a_run_error(tmp_path, keep):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.randn(1000)}, "iter_num": 1})
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:cut])
    with pytest.raises(RunError, match="ckpt.pt in .* is truncated or corrupt .*Delete it or point init_from"):
        load_checkpoint(path)


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes_are_a_run_error(tmp_path, seed):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(RunError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_a_text_file_is_named_as_one(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint\nat all\n")
    with pytest.raises(RunError, match="notes.txt in .* is a text file, not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_zip_bytes_flipped_inside_are_a_run_error(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"model": {"w": torch.randn(1000)}})
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 97):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RunError, match="truncated or corrupt"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, found", [({"weights": torch.zeros(2)}, "keys: weights"), (torch.zeros(2), "a Tensor")])
def test_a_file_that_is_not_a_checkpoint_is_a_run_error(tmp_path, content, found):
    path = tmp_path / "ckpt.pt"
    torch.save(content, path)
    with pytest.raises(RunError, match=f"not a slo or nanoGPT checkpoint .*{found}"):
        load_checkpoint(path)


class Arbitrary:
    pass


def test_pickled_python_objects_are_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {}, "extra": Arbitrary()}, path)
    with pytest.raises(RunError, match=r"a Python object \(.*Arbitrary\) that safe loading refuses"):
        load_checkpoint(path)


def test_a_checkpoint_whose_unpickling_runs_a_command_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"model": {}, "payload": Payload(marker)}, tmp_path / "ckpt.pt")
    with pytest.raises(RunError) as info:
        load_checkpoint(tmp_path / "ckpt.pt")
    assert not marker.exists()
    assert "holds a Python object (posix.system) that safe loading refuses" in str(info.value)
    assert "weights_only" not in str(info.value) and "corrupt" not in str(info.value)


HOSTILE = [Arbitrary(), Payload("/nonexistent/ran"), os.getcwd, collections.deque([1]), datetime.date(2020, 1, 1),
           decimal.Decimal(1), frozenset({1}), range(3), slice(1, 2), type, Exception("x")]


@settings(max_examples=150, deadline=None)
@given(value=st.sampled_from(HOSTILE), protocol=st.integers(2, 5), legacy=st.booleans(),
       flips=st.lists(st.integers(0, 10 ** 6), max_size=4))
def test_no_refusal_nor_damage_is_ever_told_to_load_unsafely(tmp_path_factory, value, protocol, legacy, flips):
    """torch's text for a refused object advises weights_only=False, which runs what the file holds;
    whatever a file holds and however it is damaged, slo's message never says it, and names a refusal
    as one, never as damage."""
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    torch.save({"model": {"w": torch.zeros(3)}, "extra": value}, path, pickle_protocol=protocol,
               _use_new_zipfile_serialization=not legacy)
    data = bytearray(path.read_bytes())
    for at in flips:
        data[at % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        load_checkpoint(path)
    except RunError as e:
        assert "weights_only" not in str(e) and "weights only" not in str(e).lower()
        assert flips or protocol >= 4 or "that safe loading refuses" in str(e)  # torch reads protocols 2 and 3


# ---------------------------------------------------------------- model compatibility


def test_an_incompatible_config_names_every_differing_key():
    saved = ModelArgs(**TINY).to_dict()
    check_compatible(saved, ModelArgs(**TINY, dropout=0.2, activation_checkpointing=True))  # training-only keys may differ
    with pytest.raises(RunError) as info:
        check_compatible(saved, ModelArgs(**{**TINY, "n_layer": 3, "n_embd": 48}, use_rope=True))
    text = str(info.value)
    assert "different model config" in text
    for diff in ("n_layer: checkpoint 2, config 3", "n_embd: checkpoint 32, config 48", "use_rope: checkpoint False, config True"):
        assert diff in text
    assert "n_head" not in text


def test_weights_that_do_not_fit_the_model_args_are_a_run_error(tmp_path):
    model = GPT(ModelArgs(**{**TINY, "n_embd": 48}))
    ckpt = {"model": model.state_dict(), "model_args": ModelArgs(**TINY).to_dict()}
    with pytest.raises(RunError, match=r"wrong shape: transformer.wte.weight \(64, 48\) vs \(64, 32\).*different model config"):
        model_from_checkpoint(ckpt)
    del ckpt["model"]["lm_head.weight"], ckpt["model"]["transformer.wte.weight"]
    ckpt["model"]["transformer.extra"] = torch.zeros(1)
    with pytest.raises(RunError, match="missing: transformer.wte.weight, lm_head.weight.*unexpected: transformer.extra"):
        model_from_checkpoint(ckpt)
    with pytest.raises(RunError, match="no 'model_args'"):
        model_from_checkpoint({"model": {}})


# ---------------------------------------------------------------- nanoGPT's ckpt.pt


def nanogpt_checkpoint(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=65, seed=0) -> dict:
    """A checkpoint as nanoGPT's train.py writes it after torch.compile: bias=True,
    '_orig_mod.' names, the causal-mask buffers of a torch without flash attention."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen) * 0.1

    C = n_embd
    sd = {"transformer.wte.weight": rand(vocab_size, C), "transformer.wpe.weight": rand(block_size, C)}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        sd.update({
            p + "ln_1.weight": 1 + rand(C), p + "ln_1.bias": rand(C),
            p + "attn.bias": torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size),
            p + "attn.c_attn.weight": rand(3 * C, C), p + "attn.c_attn.bias": rand(3 * C),
            p + "attn.c_proj.weight": rand(C, C), p + "attn.c_proj.bias": rand(C),
            p + "ln_2.weight": 1 + rand(C), p + "ln_2.bias": rand(C),
            p + "mlp.c_fc.weight": rand(4 * C, C), p + "mlp.c_fc.bias": rand(4 * C),
            p + "mlp.c_proj.weight": rand(C, 4 * C), p + "mlp.c_proj.bias": rand(C),
        })
    sd.update({"transformer.ln_f.weight": 1 + rand(C), "transformer.ln_f.bias": rand(C)})
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    params = [t for k, t in sd.items() if not k.endswith("attn.bias")]
    opt = torch.optim.AdamW([torch.nn.Parameter(t.clone()) for t in params], lr=1e-3, betas=(0.9, 0.99))
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    opt.step()
    return {
        "model": {"_orig_mod." + k: v for k, v in sd.items()},
        "optimizer": opt.state_dict(),
        "model_args": dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                           bias=True, vocab_size=vocab_size, dropout=0.0),
        "iter_num": 250,
        "best_val_loss": torch.tensor(1.4697),
        "config": {"out_dir": "out-shakespeare-char", "eval_interval": 250, "dataset": "shakespeare_char",
                   "batch_size": 64, "block_size": block_size, "learning_rate": 1e-3, "device": "cuda",
                   "dtype": "bfloat16", "compile": True, "wandb_log": False, "init_from": "scratch"},
    }


def nanogpt_logits(sd: dict, idx: torch.Tensor, n_layer: int, n_head: int) -> torch.Tensor:
    """nanoGPT's forward written out by hand, from the raw state dict."""
    def w(name):
        return sd["_orig_mod." + name]

    B, T = idx.shape
    C = w("transformer.wte.weight").size(1)
    x = w("transformer.wte.weight")[idx] + w("transformer.wpe.weight")[:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        h = F.layer_norm(x, (C,), w(p + "ln_1.weight"), w(p + "ln_1.bias"), 1e-5)
        q, k, v = (h @ w(p + "attn.c_attn.weight").T + w(p + "attn.c_attn.bias")).split(C, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (C // n_head) ** 0.5
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ w(p + "attn.c_proj.weight").T + w(p + "attn.c_proj.bias")
        h = F.layer_norm(x, (C,), w(p + "ln_2.weight"), w(p + "ln_2.bias"), 1e-5)
        h = F.gelu(h @ w(p + "mlp.c_fc.weight").T + w(p + "mlp.c_fc.bias"))
        x = x + h @ w(p + "mlp.c_proj.weight").T + w(p + "mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), w("transformer.ln_f.weight"), w("transformer.ln_f.bias"), 1e-5)
    return x @ w("lm_head.weight").T


def test_a_nanogpt_checkpoint_loads_computes_the_same_logits_and_samples(tmp_path):
    nano = nanogpt_checkpoint()
    path = tmp_path / "ckpt.pt"
    torch.save(nano, path)  # nanoGPT saves with plain torch.save
    ckpt = load_checkpoint(path)
    assert ckpt["iter_num"] == 250 and ckpt["config"]["dataset"] == "shakespeare_char"
    model = model_from_checkpoint(ckpt).eval()
    assert model.args.bias and model.args.tie_weights and model.args.n_kv_head == 4
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model(idx)[0], nanogpt_logits(nano["model"], idx, 2, 4), rtol=1e-5, atol=1e-5)
    out = model.generate(idx[:, :4], 30, temperature=0.8, top_k=10, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 34) and int(out.max()) < 65
    check_compatible(ckpt["model_args"], ModelArgs(n_layer=2, n_head=4, n_embd=32, block_size=16, bias=True, vocab_size=65))
