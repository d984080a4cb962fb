"""Hugging Face GPT-2 and Llama in and out: the same logits and greedy tokens as transformers, bitwise
round trips of the weights, `slo export`, and refusals of what slo's GPT cannot compute."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_run import tiny_config

from slo import cli
from slo.errors import RunError
from slo.runner.checkpoint.store import save_checkpoint
from slo.runner.hf.export import tokenizer_files
from slo.runner.hf.mapping import hf_from_slo, read_hf_folder, shape_from_hf_config, tokenizer_meta
from slo.runner.model.gpt import GPT, SHAPE_KEYS, ModelArgs

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

VOCAB = 97
HF_CONFIGS = {
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=32, activation_function="gelu"),
    "llama": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=192,
                  num_hidden_layers=2, vocab_size=VOCAB, rope_theta=5e5, tie_word_embeddings=False,
                  max_position_embeddings=64),
}
ATOL = 1e-5


def hf_model(kind: str, **changes):
    """A small transformers model with random weights, in eval mode; no end-of-text id, so that
    generate() runs to the length asked."""
    torch.manual_seed(0)
    options = {**HF_CONFIGS[kind], "bos_token_id": None, "eos_token_id": None, **changes}
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(**options)).eval()
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**options)).eval()


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def saved(request, tmp_path_factory):
    """(kind, the transformers model, the folder it was saved to)."""
    folder = tmp_path_factory.mktemp(request.param)
    model = hf_model(request.param)
    model.save_pretrained(folder)
    return request.param, model, folder


def slo_model(shape: dict, state: dict) -> GPT:
    model = GPT(ModelArgs(**shape))
    model.load_state_dict(state)
    return model.eval()


def tokens(n: int = 24, rows: int = 2, vocab: int = VOCAB) -> torch.Tensor:
    return torch.randint(0, vocab, (rows, n), generator=torch.Generator().manual_seed(1))


def assert_same_logits(hf, slo: GPT, vocab: int = VOCAB) -> None:
    idx = tokens(min(24, slo.args.block_size), vocab=vocab)
    with torch.no_grad():
        torch.testing.assert_close(slo(idx)[0], hf(idx).logits, rtol=0, atol=ATOL)


def assert_same_greedy_tokens(hf, slo: GPT, vocab: int = VOCAB) -> None:
    prompt = tokens(5, vocab=vocab)
    with torch.no_grad():
        theirs = hf.generate(prompt, do_sample=False, max_new_tokens=20, min_new_tokens=20)
    assert torch.equal(slo.generate(prompt, 20, temperature=0), theirs)


# ---------------------------------------------------------------- Hugging Face -> slo


def test_slo_computes_transformers_logits(saved):
    kind, hf, folder = saved
    shape, state, meta = read_hf_folder(folder)
    assert meta is None  # no tokenizer.json, and not GPT-2's vocabulary
    if kind == "llama":
        assert (shape["n_kv_head"], shape["rope_theta"], shape["tie_weights"]) == (2, 5e5, False)
        assert ModelArgs(**shape).mlp_hidden == 192
    assert_same_logits(hf, slo_model(shape, state))


def test_greedy_generation_matches_transformers_token_for_token(saved):
    kind, hf, folder = saved
    assert_same_greedy_tokens(hf, slo_model(*read_hf_folder(folder)[:2]))


def test_hf_to_slo_to_hf_is_bitwise(saved):
    kind, hf, folder = saved
    shape, state, _ = read_hf_folder(folder)
    config, back = hf_from_slo(ModelArgs(**shape), state)
    original = safetensors_torch.load_file(folder / "model.safetensors")
    assert sorted(back) == sorted(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    assert config["model_type"] == kind


def test_llama_with_biases_tied_head_and_one_kv_head(tmp_path):
    hf = hf_model("llama", attention_bias=True, mlp_bias=True, tie_word_embeddings=True, num_key_value_heads=1,
                  intermediate_size=128)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    hf.save_pretrained(tmp_path)
    shape, state, _ = read_hf_folder(tmp_path)
    assert shape["bias"] and shape["tie_weights"] and shape["n_kv_head"] == 1
    assert_same_logits(hf, slo_model(shape, state))


@pytest.mark.skipif("activation" not in SHAPE_KEYS, reason="this slo has no activation key")
@pytest.mark.parametrize("name", ["gelu_new", "gelu_pytorch_tanh"])
def test_gpt2_tanh_gelu_is_activation_gelu_tanh(name, tmp_path):
    """GPT-2's own configs name the tanh approximation of GELU."""
    hf = hf_model("gpt2", activation_function=name)
    hf.save_pretrained(tmp_path)
    shape, state, _ = read_hf_folder(tmp_path)
    assert shape["activation"] == "gelu_tanh"
    assert_same_logits(hf, slo_model(shape, state))


def test_pytorch_bin_and_sharded_safetensors_read_the_same(tmp_path):
    hf = hf_model("llama")
    hf.save_pretrained(tmp_path / "one")
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_bytes((tmp_path / "one" / "config.json").read_bytes())
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    _, expected, _ = read_hf_folder(tmp_path / "one")
    for name in ("sharded", "bin"):
        _, state, _ = read_hf_folder(tmp_path / name)
        assert sorted(state) == sorted(expected)
        assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_tokenizer_meta_of_a_folder(tmp_path):
    text = tokenizer_files({"tokenizer": "byte", "vocab_size": 256}, ModelArgs())[0]["tokenizer.json"].decode()
    (tmp_path / "tokenizer.json").write_text(text)
    meta = tokenizer_meta(tmp_path, {"model_type": "llama", "eos_token_id": 10})
    assert meta == {"tokenizer": "hf", "vocab_size": 256, "tokenizer_json": text, "eot_id": 10}
    (tmp_path / "tokenizer.json").unlink()
    assert tokenizer_meta(tmp_path, {"model_type": "gpt2", "vocab_size": 50257}) == {"tokenizer": "gpt2",
                                                                                     "vocab_size": 50257}
    assert tokenizer_meta(tmp_path, {"model_type": "gpt2", "vocab_size": VOCAB}) is None


# ---------------------------------------------------------------- refusals of what slo cannot compute


LLAMA_JSON = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
              "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 192, "vocab_size": VOCAB}


@pytest.mark.parametrize("changes, named", [
    ({"model_type": "mistral", "architectures": ["MistralForCausalLM"], "rope_scaling": {"factor": 2.0}}, "mistral"),
    ({"model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"]}, "GPTNeoXForCausalLM"),
    ({"architectures": ["LlamaForSequenceClassification"]}, "LlamaForSequenceClassification"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "yarn"),
    ({"head_dim": 32}, "head_dim=32"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"attention_bias": True}, "attention_bias=true with mlp_bias=false"),
    ({"intermediate_size": 100}, "intermediate_size=100"),
    ({"hidden_size": "64"}, "hidden_size must be an int"),
    ({"model_type": "gpt2", "activation_function": "relu"}, "activation_function='relu'"),
    ({"model_type": "gpt2", "scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=true"),
])
def test_unsupported_configs_are_refused_by_name(changes, named):
    config = {**LLAMA_JSON, **changes}
    if config["model_type"] == "gpt2":
        config["architectures"] = ["GPT2LMHeadModel"]
    with pytest.raises(RunError, match=re.escape(named)):
        shape_from_hf_config(config, "x/config.json")


def test_the_mlp_ratio_reproduces_intermediate_size():
    for n_embd, hidden in ((4096, 11008), (2048, 5632), (576, 1536), (64, 192)):
        shape = shape_from_hf_config({**LLAMA_JSON, "hidden_size": n_embd, "num_attention_heads": 8,
                                      "intermediate_size": hidden}, "x")
        assert ModelArgs(**shape).mlp_hidden == hidden
    assert shape["mlp_ratio"] == 4.0  # the default when it fits


def test_damaged_folders_are_errors_naming_the_file(tmp_path):
    with pytest.raises(RunError, match="no config.json"):
        read_hf_folder(tmp_path)
    hf_model("gpt2").save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(RunError, match=r"model\.safetensors is truncated or corrupt"):
        read_hf_folder(tmp_path)
    weights.unlink()
    with pytest.raises(RunError, match="no weights in"):
        read_hf_folder(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RunError, match=r"config\.json is not valid JSON"):
        read_hf_folder(tmp_path)


@pytest.mark.parametrize("options, named", [
    (dict(use_swiglu=True), r"as GPT-2 it has use_swiglu=True; as Llama it has use_rope=False, use_rmsnorm=False"),
    (dict(use_rope=True, use_rmsnorm=True, use_swiglu=True, qk_norm=True), "as Llama it has qk_norm=True"),
])
def test_slo_models_neither_architecture_expresses_are_refused(options, named):
    model = GPT(ModelArgs(n_layer=1, n_head=2, n_embd=32, vocab_size=VOCAB, block_size=16, **options))
    with pytest.raises(RunError, match=named):
        hf_from_slo(model.args, model.state_dict())


# ---------------------------------------------------------------- slo export


SHAPES = {  # slo models to export: (their options, the class transformers loads)
    "gpt2": (dict(bias=True), "GPT2LMHeadModel"),
    "gpt2-tanh": (dict(bias=True, activation="gelu_tanh", tie_weights=False, mlp_ratio=3), "GPT2LMHeadModel"),
    "llama": (dict(use_rope=True, use_rmsnorm=True, use_swiglu=True, n_kv_head=1, tie_weights=False,
                   rope_theta=5e5, norm_eps=1e-6), "LlamaForCausalLM"),
}


def save_run(folder: Path, meta=None, vocab_size: int = 256, **options) -> GPT:
    """A checkpoint of a random slo model, in the trainer's format; returns the model."""
    torch.manual_seed(0)
    model = GPT(ModelArgs(n_layer=2, n_head=4, n_embd=64, block_size=32, vocab_size=vocab_size, **options)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)  # not plain init
    save_checkpoint(folder / "ckpt.pt", {"model": model.state_dict(), "model_args": model.args.to_dict(),
                                         "iter_num": 10, "best_val_loss": 1.0, "config": {}, "meta": meta})
    return model


def export(*argv) -> int:
    return cli.main(["export", *map(str, argv)])


@pytest.mark.parametrize("kind", list(SHAPES))
def test_export_loads_in_transformers_with_slos_logits(kind, tmp_path, capsys):
    options, architecture = SHAPES[kind]
    if "activation" in options and "activation" not in SHAPE_KEYS:
        pytest.skip("this slo has no activation key")
    slo = save_run(tmp_path, {"tokenizer": "byte", "vocab_size": 256}, **options)
    assert export(tmp_path, "-o", tmp_path / "hf") == 0
    assert f"({architecture})" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["torch_dtype"] == "float32"
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == architecture
    assert_same_logits(hf, slo, vocab=256)
    assert_same_greedy_tokens(hf, slo, vocab=256)
    shape, state, meta = read_hf_folder(tmp_path / "hf")  # slo -> HF -> slo
    assert sorted(state) == sorted(slo.state_dict())
    assert all(torch.equal(state[k], v) for k, v in slo.state_dict().items())
    assert shape == {k: getattr(slo.args, k) for k in shape} and meta["tokenizer"] == "hf"
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer("héllo\n").input_ids == list("héllo\n".encode())
    assert tokenizer.decode(list("héllo\n".encode())) == "héllo\n"


@pytest.mark.parametrize("extra", ["", "MODEL use_rope=True use_rmsnorm=True use_swiglu=True\nADVANCED n_kv_head=1\n"],
                         ids=["gpt2", "llama"])
def test_export_of_a_trained_run(extra, tmp_path, capsys):
    from slo.runner.checkpoint.store import load_checkpoint, model_from_checkpoint
    from slo.runner.train_command import main as train

    assert train([str(tiny_config(tmp_path, extra=extra, max_iters=4))]) == 0
    assert export(tmp_path / "out", "-o", tmp_path / "hf") == 0
    captured = capsys.readouterr()
    assert ("written as zeros" in captured.err) == (extra == "")  # the run has bias=False
    slo = model_from_checkpoint(load_checkpoint(tmp_path / "out")).eval()
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert_same_logits(hf, slo, vocab=256)


def test_gpt2_export_names_its_context_n_ctx_as_gpt2s_own_config(tmp_path):
    """llama.cpp's converter reads n_ctx (KeyError without it)."""
    save_run(tmp_path, bias=True)
    assert export(tmp_path, "-o", tmp_path / "hf") == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["n_ctx"] == config["n_positions"] == 32


def test_llama_export_writes_rope_as_transformers_does(tmp_path):
    """transformers 4's rope_theta and rope_scaling: null, which transformers 5 reads as its own
    rope_parameters; a rope_parameters key in the file is one transformers 4 ignores (computing with
    rope_theta 10000) and llama.cpp's converter (pinned to transformers 4) warns of: "Unknown RoPE type"."""
    slo = save_run(tmp_path, **SHAPES["llama"][0])
    assert export(tmp_path, "-o", tmp_path / "hf") == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert {k: v for k, v in config.items() if "rope" in k} == {"rope_theta": 5e5, "rope_scaling": None}
    loaded = transformers.AutoConfig.from_pretrained(tmp_path / "hf").to_dict()
    own = transformers.LlamaConfig(rope_theta=5e5).to_dict()
    assert {k: v for k, v in loaded.items() if "rope" in k} == {k: v for k, v in own.items() if "rope" in k}
    assert_same_logits(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval(), slo, vocab=256)


END_OF_TEXT = {  # meta, model vocab_size: the end-of-text id and text the export names
    "byte": ({"tokenizer": "byte", "vocab_size": 256}, 256, 255, "<|endoftext|>"),
    "char-padded": ({"tokenizer": "char", "vocab_size": 5, "itos": ["\n", " ", "a", "b", "é"]}, 8, 5,
                    "<|endoftext|>"),
    "char-full": ({"tokenizer": "char", "vocab_size": 5, "itos": ["\n", " ", "a", "b", "é"]}, 5, 0, "\n"),
}


@pytest.mark.parametrize("case", list(END_OF_TEXT))
def test_byte_and_char_exports_have_the_end_of_text_lm_eval_reads(case, tmp_path, capsys):
    """lm-evaluation-harness's HFLM takes eot_token_id from tokenizer.eos_token_id (None: it crashes),
    and its prefix token from bos_token_id; generate() stops at generation_config's eos_token_id."""
    meta, vocab, eot, text = END_OF_TEXT[case]
    slo = save_run(tmp_path, meta, vocab_size=vocab)
    assert export(tmp_path, "-o", tmp_path / "hf") == 0
    assert ("the end-of-text token is the newline" in capsys.readouterr().err) == (case == "char-full")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert (tokenizer.eos_token, tokenizer.eos_token_id, tokenizer.bos_token, tokenizer.bos_token_id) == (
        text, eot, text, eot)
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert (generation["eos_token_id"], generation["bos_token_id"]) == (eot, eot)
    sample = "ab é\nba " if case != "byte" else "héllo ÿ wörld\n"
    ids = tokenizer(sample).input_ids
    assert tokenizer.decode(ids) == sample
    assert ids == (list(sample.encode()) if case == "byte" else [meta["itos"].index(c) for c in sample])
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert_same_logits(hf, slo, vocab=vocab)


@functools.cache
def byte_tokenizer(folder: str):
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def byte_export(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("bytes")
    save_run(folder, {"tokenizer": "byte", "vocab_size": 256})
    assert export(folder, "-o", folder / "hf") == 0
    return str(folder / "hf")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40) | st.just("a<|endoftext|>b"))
def test_the_byte_export_encodes_any_text_as_its_utf8_bytes(byte_export, text):
    """No text encodes to the end of text (0xFF is never a byte of UTF-8, and the tokenizer splits
    special tokens written in a text), so every text round-trips."""
    tokenizer = byte_tokenizer(byte_export)
    ids = tokenizer(text).input_ids
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == tokenizer.decode(ids, skip_special_tokens=True) == text


def test_export_without_biases_writes_zero_biases(tmp_path):
    slo = save_run(tmp_path)
    assert export(tmp_path / "ckpt.pt", "-o", tmp_path / "hf") == 0
    shape, state, _ = read_hf_folder(tmp_path / "hf")
    assert shape["bias"] is True
    own = slo.state_dict()
    assert all(torch.equal(state[k], own[k]) for k in own)
    assert all(not state[k].any() for k in set(state) - set(own))


def test_export_tokenizers(tmp_path, monkeypatch):
    char = tokenizer_files({"tokenizer": "char", "vocab_size": 4, "itos": ["\n", " ", "a", "b"]}, ModelArgs())[0]
    from tokenizers import Tokenizer

    assert Tokenizer.from_str(char["tokenizer.json"].decode()).encode("ab a\n").ids == [2, 3, 1, 2, 0]
    text = char["tokenizer.json"].decode()
    files, eot, why, _ = tokenizer_files({"tokenizer": "hf", "vocab_size": 4, "tokenizer_json": text, "eot_id": 0},
                                      ModelArgs())
    assert files["tokenizer.json"] == char["tokenizer.json"] and eot == 0 and why is None
    assert json.loads(files["tokenizer_config.json"])["eos_token"] == "\n"
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    files, eot, why, _ = tokenizer_files(None, ModelArgs())  # nanoGPT's: no meta, GPT-2's vocabulary
    assert files == {} and eot == 50256 and "not in the Hugging Face cache" in why
    snapshot = tmp_path / "hub" / "models--openai-community--gpt2" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "tokenizer.json").write_text(text)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    files, eot, why, _ = tokenizer_files({"tokenizer": "gpt2", "vocab_size": 50257}, ModelArgs())
    assert files["tokenizer.json"].decode() == text and why is None
    assert "no tokenizer meta" in tokenizer_files(None, ModelArgs(vocab_size=VOCAB))[2]


def test_a_run_without_a_tokenizer_exports_with_a_note(tmp_path, capsys):
    save_run(tmp_path, None, vocab_size=VOCAB)
    assert export(tmp_path, "-o", tmp_path / "hf") == 0
    assert "note: the tokenizer was not written: the checkpoint holds no tokenizer meta" in capsys.readouterr().err
    assert not (tmp_path / "hf" / "tokenizer.json").exists()


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_export_refusals_are_one_line_errors(tmp_path, capsys):
    save_run(tmp_path / "swiglu", use_swiglu=True)
    assert export(tmp_path / "swiglu", "-o", tmp_path / "hf") == 1
    assert "use_swiglu=True" in one_error(capsys) and not (tmp_path / "hf").exists()
    save_run(tmp_path / "qk", use_rope=True, use_rmsnorm=True, use_swiglu=True, qk_norm=True)
    assert export(tmp_path / "qk", "-o", tmp_path / "hf") == 1
    assert "qk_norm=True" in one_error(capsys)
    assert export(tmp_path / "nowhere", "-o", tmp_path / "hf") == 1
    assert "no checkpoint" in one_error(capsys)
    assert export(tmp_path / "qk") == 1
    assert "-o FOLDER" in one_error(capsys)
    assert list(tmp_path.glob(".hf.*")) == []  # no temporary folder left behind


def test_an_existing_folder_needs_force_and_must_be_an_export(tmp_path, capsys):
    save_run(tmp_path)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export(tmp_path, "-o", out) == 1
    assert "already exists; add --force" in one_error(capsys)
    assert export(tmp_path, "-o", out, "--force") == 1
    assert "does not look like an exported model" in one_error(capsys)
    assert (out / "notes.txt").read_text() == "mine"
    assert export(tmp_path, "-o", tmp_path, "--force") == 1  # the run's own folder
    one_error(capsys)
    (out / "notes.txt").unlink()
    assert export(tmp_path, "-o", out) == 0  # an empty folder is fine
    (out / "stale.txt").write_text("from an earlier export")
    assert export(tmp_path, "-o", out, "--force") == 0
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hf.")] == []
