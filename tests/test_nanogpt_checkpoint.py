"""nanoGPT reads slo's checkpoints of nanoGPT-shaped models: their model_args hold exactly the fields of
nanoGPT's GPTConfig, which its sample.py builds with ``GPTConfig(**checkpoint['model_args'])``; a model
nanoGPT cannot express keeps every key; slo reads both forms back, the keys left out at their defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slo.cli import main as slo_main
from slo.runner.checkpoint.store import load_checkpoint, saved_model_args
from slo.runner.model.gpt import ModelArgs
from slo.runner.train_command import main
from slo.schema import SHAPE_KEYS
from tiny_run import metrics, tiny_config


@dataclass
class GPTConfig:
    """The fields of nanoGPT's GPTConfig (model.py), and nothing else: an unknown key is a TypeError."""

    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


NANOGPT_FIELDS = {f.name for f in dataclasses.fields(GPTConfig)}


def train(config, *overrides):
    return main([str(config), *overrides])


def test_nanogpt_builds_its_config_from_a_nanogpt_shaped_run(tmp_path):
    assert train(tiny_config(tmp_path, "run"), "--max_iters=4") == 0
    ckpt = torch.load(tmp_path / "run" / "ckpt.pt", map_location="cpu", weights_only=True)  # as sample.py loads it
    assert set(ckpt["model_args"]) == NANOGPT_FIELDS
    config = GPTConfig(**ckpt["model_args"])
    assert (config.n_layer, config.n_head, config.n_embd, config.block_size, config.vocab_size) == (2, 2, 32, 16, 256)
    assert (config.dropout, config.bias) == (0.1, False)


def test_a_model_nanogpt_cannot_express_keeps_every_key(tmp_path):
    assert train(tiny_config(tmp_path, "rope"), "--max_iters=2", "--use_rope=True") == 0
    args = load_checkpoint(tmp_path / "rope" / "ckpt.pt")["model_args"]
    assert set(args) == set(SHAPE_KEYS) and args["use_rope"] is True
    assert train(tiny_config(tmp_path, "gqa"), "--max_iters=2", "--n_head=4", "--n_kv_head=2") == 0
    assert load_checkpoint(tmp_path / "gqa" / "ckpt.pt")["model_args"]["n_kv_head"] == 2


def test_every_reader_takes_the_short_form_and_resume_stays_exact(tmp_path, capsys):
    assert train(tiny_config(tmp_path, "whole")) == 0
    split = tiny_config(tmp_path, "split")
    assert train(split, "--max_iters=4") == 0
    assert set(load_checkpoint(tmp_path / "split" / "ckpt.pt")["model_args"]) == NANOGPT_FIELDS
    assert train(split, "--init_from=resume") == 0
    assert metrics(tmp_path / "split") == metrics(tmp_path / "whole")  # exact, step by step
    a, b = load_checkpoint(tmp_path / "whole" / "ckpt.pt"), load_checkpoint(tmp_path / "split" / "ckpt.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert train(tiny_config(tmp_path, "tuned"), f"--init_from={tmp_path / 'split'}", "--max_iters=1") == 0
    assert slo_main(["sample", str(tmp_path / "split"), "--max_new_tokens=4", "--device=cpu"]) == 0
    assert slo_main(["export", str(tmp_path / "split"), "-o", str(tmp_path / "hf")]) == 0
    assert "Traceback" not in capsys.readouterr().err


EXTRAS = {"use_rope": st.booleans(), "use_rmsnorm": st.booleans(), "use_swiglu": st.booleans(),
          "qk_norm": st.booleans(), "tie_weights": st.booleans(), "n_kv_head": st.sampled_from([None, 1, 2, 4]),
          "rope_theta": st.sampled_from([10000.0, 500.0]), "norm_eps": st.sampled_from([1e-5, 1e-6]),
          "mlp_ratio": st.sampled_from([4.0, 3.0]), "activation": st.sampled_from(["gelu", "gelu_tanh", "relu2"]),
          "logit_softcap": st.sampled_from([0.0, 15.0]), "init_std": st.sampled_from([0.02, 0.01]),
          "zero_init_proj": st.booleans(), "activation_checkpointing": st.booleans()}


@settings(max_examples=200, deadline=None)
@given(extras=st.fixed_dictionaries({}, optional=EXTRAS), n_layer=st.integers(1, 4), bias=st.booleans(),
       vocab_size=st.integers(1, 70000), dropout=st.sampled_from([0.0, 0.1]))
def test_model_args_are_nanogpt_s_exactly_when_nothing_else_differs_from_its_default(extras, n_layer, bias,
                                                                                   vocab_size, dropout):
    args = ModelArgs(n_layer=n_layer, n_head=4, n_embd=64, block_size=32, bias=bias, vocab_size=vocab_size,
                     dropout=dropout, **extras)
    saved = saved_model_args(args)
    assert ModelArgs.from_dict(saved) == args  # either form reads back as the same model
    defaults = ModelArgs(n_head=4, n_embd=64)
    at_defaults = all(getattr(args, k) == getattr(defaults, k) for k in set(SHAPE_KEYS) - NANOGPT_FIELDS)
    assert set(saved) == (NANOGPT_FIELDS if at_defaults else set(SHAPE_KEYS))
