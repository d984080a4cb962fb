"""`slo export --format gguf`: the file read back with the gguf package's own reader (metadata, tokenizer,
tensor names, shapes and types from its constants), the weights equal to the model's (Llama's q and k
permuted to llama.cpp's rotation, checked by undoing it), and what cannot be written refused by name."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hf import SHAPES, export, one_error, save_run

from slo.runner.hf.gguf import interleave_rope
from slo.runner.model.gpt import apply_rotary, rotary_tables

gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

BYTES = {"tokenizer": "byte", "vocab_size": 256}
ARCH = {"gpt2": gguf.MODEL_ARCH.GPT2, "llama": gguf.MODEL_ARCH.LLAMA}


def written(tmp_path, kind: str, meta=BYTES, *extra, **options):
    """(the slo model, the GGUFReader of its export, the file's metadata as plain values)."""
    slo = save_run(tmp_path, meta, **{**SHAPES[kind][0], **options})
    assert export(tmp_path, "-o", tmp_path / "model.gguf", "--format", "gguf", *extra) == 0
    reader = gguf.GGUFReader(tmp_path / "model.gguf")
    return slo, reader, {name: field.contents() for name, field in reader.fields.items()}


def expected_names(kind: str, args) -> set[str]:
    """Every tensor llama.cpp's loader reads for this model, named by the gguf package's constants."""
    T, names = gguf.MODEL_TENSOR, gguf.TENSOR_NAMES
    if kind == "gpt2":
        top = [(T.TOKEN_EMBD, "weight"), (T.POS_EMBD, "weight"), (T.OUTPUT_NORM, "weight"), (T.OUTPUT_NORM, "bias")]
        per_block = [(t, p) for t in (T.ATTN_NORM, T.ATTN_QKV, T.ATTN_OUT, T.FFN_NORM, T.FFN_UP, T.FFN_DOWN)
                     for p in ("weight", "bias")]
    else:
        top = [(T.TOKEN_EMBD, "weight"), (T.OUTPUT_NORM, "weight")]
        per_block = [(t, "weight") for t in (T.ATTN_NORM, T.ATTN_Q, T.ATTN_K, T.ATTN_V, T.ATTN_OUT, T.FFN_NORM,
                                             T.FFN_GATE, T.FFN_UP, T.FFN_DOWN)]
    if not args.tie_weights:
        top.append((T.OUTPUT, "weight"))
    assert all(t in gguf.MODEL_TENSORS[ARCH[kind]] for t, _ in top + per_block)
    return ({f"{names[t]}.{p}" for t, p in top}
            | {f"{names[t].format(bid=i)}.{p}" for t, p in per_block for i in range(args.n_layer)})


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_metadata_and_tensor_names_are_llama_cpps(kind, tmp_path):
    slo, reader, meta = written(tmp_path, kind)
    a, arch = slo.args, kind
    assert meta["general.architecture"] == arch and meta["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert (meta[f"{arch}.context_length"], meta[f"{arch}.embedding_length"], meta[f"{arch}.block_count"],
            meta[f"{arch}.feed_forward_length"], meta[f"{arch}.attention.head_count"],
            meta[f"{arch}.attention.head_count_kv"]) == (a.block_size, a.n_embd, a.n_layer, a.mlp_hidden, a.n_head,
                                                          a.n_kv_head)
    if kind == "gpt2":
        assert meta["gpt2.attention.layer_norm_epsilon"] == pytest.approx(a.norm_eps)
        assert not any(".rope." in name for name in meta)
    else:
        assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(a.norm_eps)
        assert (meta["llama.rope.freq_base"], meta["llama.rope.dimension_count"]) == (a.rope_theta, a.head_size)
    names = {t.name for t in reader.tensors}
    assert names == expected_names(kind, a)
    for t in reader.tensors:  # GGUF lists dimensions innermost first
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert tuple(int(d) for d in reversed(t.shape)) == tuple(t.data.shape)


def test_gpt2_tensors_are_the_models_weights(tmp_path):
    slo, reader, _ = written(tmp_path, "gpt2")
    state, gguf_state = slo.state_dict(), {t.name: torch.from_numpy(t.data.copy()) for t in reader.tensors}
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, slo.args.n_layer)
    for name, tensor in state.items():  # slo's Linear layout is llama.cpp's: no transposition left
        if name == "lm_head.weight":
            name = "transformer.wte.weight" if slo.args.tie_weights else name
        assert torch.equal(gguf_state[names.get_name(name, try_suffixes=(".weight", ".bias"))], tensor), name


def test_llama_tensors_are_the_models_weights_with_q_and_k_permuted(tmp_path):
    slo, reader, _ = written(tmp_path, "llama")
    a, state = slo.args, slo.state_dict()
    got = {t.name: torch.from_numpy(t.data.copy()) for t in reader.tensors}

    def undo(weight, heads):  # llama.cpp's rows (2i, 2i + 1) back to (i, i + hs/2) of each head
        return weight.reshape(heads, a.head_size // 2, 2, -1).transpose(1, 2).reshape(weight.shape)

    for i in range(a.n_layer):
        kv = a.head_size * a.n_kv_head
        q, k, v = state[f"transformer.h.{i}.attn.c_attn.weight"].split([a.n_embd, kv, kv])
        assert not torch.equal(got[f"blk.{i}.attn_q.weight"], q)  # permuted, so not the same rows
        assert torch.equal(undo(got[f"blk.{i}.attn_q.weight"], a.n_head), q)
        assert torch.equal(undo(got[f"blk.{i}.attn_k.weight"], a.n_kv_head), k)
        assert torch.equal(got[f"blk.{i}.attn_v.weight"], v)
        gate, up = state[f"transformer.h.{i}.mlp.c_fc.weight"].split(a.mlp_hidden)
        assert torch.equal(got[f"blk.{i}.ffn_gate.weight"], gate) and torch.equal(got[f"blk.{i}.ffn_up.weight"], up)
        assert torch.equal(got[f"blk.{i}.ffn_down.weight"], state[f"transformer.h.{i}.mlp.c_proj.weight"])
        assert torch.equal(got[f"blk.{i}.attn_norm.weight"], state[f"transformer.h.{i}.ln_1.weight"])
    assert torch.equal(got["token_embd.weight"], state["transformer.wte.weight"])
    assert torch.equal(got["output.weight"], state["lm_head.weight"])


@settings(max_examples=50, deadline=None)
@given(heads=st.integers(1, 4), half=st.integers(1, 8), positions=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_the_permuted_rows_rotated_as_neighbours_are_slos_rotation(heads, half, positions, seed):
    """llama.cpp rotates pairs (2i, 2i + 1); slo and Hugging Face (i, i + hs/2). A projection whose rows
    are permuted by interleave_rope and rotated llama.cpp's way gives slo's rotated values, permuted."""
    hs = 2 * half
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(positions, 3, generator=g, dtype=torch.float64), torch.randn(heads * hs, 3, generator=g,
                                                                                    dtype=torch.float64)
    cos, sin = (t.double() for t in rotary_tables(hs, positions, 1e4))
    ours = apply_rotary((x @ w.T).reshape(positions, heads, hs).transpose(0, 1), cos, sin)  # (heads, T, hs)
    theirs = (x @ interleave_rope(w, heads).T).reshape(positions, heads, half, 2).transpose(0, 1)
    even, odd = theirs[..., 0], theirs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).reshape(heads, positions, hs)
    assert torch.allclose(interleave_rope(ours.transpose(0, 1).reshape(positions, -1).T, heads).T,
                          rotated.transpose(0, 1).reshape(positions, -1))


def test_float16_keeps_norms_biases_and_positions_float32(tmp_path):
    slo, reader, meta = written(tmp_path, "gpt2", BYTES, "--dtype", "float16")
    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    types = {t.name: t.tensor_type for t in reader.tensors}
    F16, F32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
    assert types["token_embd.weight"] == types["blk.0.attn_qkv.weight"] == F16
    assert types["position_embd.weight"] == types["blk.0.attn_qkv.bias"] == types["blk.0.attn_norm.weight"] == F32
    data = {t.name: torch.from_numpy(t.data.copy()) for t in reader.tensors}
    assert torch.equal(data["blk.0.ffn_up.weight"], slo.state_dict()["transformer.h.0.mlp.c_fc.weight"].half())


def test_the_byte_tokenizer_is_llama_cpps_gpt2_vocabulary(tmp_path):
    from slo.runner.data.bytelevel import bytes_to_unicode

    _, _, meta = written(tmp_path, "llama")
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert (meta["tokenizer.ggml.model"], meta["tokenizer.ggml.pre"]) == ("gpt2", "gpt-2")
    assert tokens[:255] == [bytes_to_unicode()[b] for b in range(255)] and tokens[255] == "<|endoftext|>"
    assert types == [gguf.TokenType.NORMAL] * 255 + [gguf.TokenType.CONTROL]
    assert meta["tokenizer.ggml.eos_token_id"] == meta["tokenizer.ggml.bos_token_id"] == 255
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.ggml.merges"] == ["<|endoftext|> <|endoftext|>"]  # gguf writes no empty array


def test_a_char_tokenizer_is_spelled_in_bytes_with_merges(tmp_path):
    itos = ["\n", " ", "a", "é", "€"]
    meta_in = {"tokenizer": "char", "vocab_size": len(itos), "itos": itos}
    _, _, meta = written(tmp_path, "gpt2", meta_in, vocab_size=8)
    from slo.runner.data.bytelevel import bytes_to_unicode

    b = bytes_to_unicode()  # € is E2 82 AC
    tokens = meta["tokenizer.ggml.tokens"]
    assert tokens[:6] == ["Ċ", "Ġ", "a", "Ã©", "â" + b[0x82] + "¬", "<|endoftext|>"]
    assert tokens[6:] == ["[PAD6]", "[PAD7]"]
    assert meta["tokenizer.ggml.merges"] == ["Ã ©", f"â {b[0x82]}", f"â{b[0x82]} ¬"]
    assert meta["tokenizer.ggml.token_type"][5:] == [gguf.TokenType.CONTROL] + [gguf.TokenType.UNUSED] * 2
    assert meta["tokenizer.ggml.eos_token_id"] == 5


def test_refusals_are_one_line_errors_naming_what(tmp_path, capsys, monkeypatch):
    save_run(tmp_path / "swiglu", BYTES, use_swiglu=True)
    assert export(tmp_path / "swiglu", "-o", tmp_path / "m.gguf", "--format", "gguf") == 1
    assert "use_swiglu=True" in one_error(capsys) and not (tmp_path / "m.gguf").exists()
    wordlevel = {"model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}
    save_run(tmp_path / "wl", {"tokenizer": "hf", "vocab_size": 1, "tokenizer_json": json.dumps(wordlevel)})
    assert export(tmp_path / "wl", "-o", tmp_path / "m.gguf", "--format", "gguf") == 1
    assert "WordLevel" in one_error(capsys)
    save_run(tmp_path / "ok", BYTES)
    (tmp_path / "m.gguf").write_text("mine")
    assert export(tmp_path / "ok", "-o", tmp_path / "m.gguf", "--format", "gguf") == 1
    assert "already exists; add --force" in one_error(capsys)
    assert export(tmp_path / "ok", "-o", tmp_path / "m.gguf", "--format", "gguf", "--force") == 1
    assert "is not a GGUF file" in one_error(capsys) and (tmp_path / "m.gguf").read_text() == "mine"
    assert export(tmp_path / "ok", "-o", tmp_path, "--format", "gguf") == 1
    assert "is a folder" in one_error(capsys)
    assert export(tmp_path / "ok", "-o", tmp_path / "hf", "--dtype", "float16") == 1
    assert "--dtype float16 is for --format gguf" in one_error(capsys)
    monkeypatch.setitem(sys.modules, "gguf", None)
    assert export(tmp_path / "ok", "-o", tmp_path / "new.gguf", "--format", "gguf") == 1
    assert "pip install 'slo[gguf]'" in one_error(capsys)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_an_earlier_gguf_is_replaced_with_force(tmp_path):
    save_run(tmp_path, BYTES)
    out = tmp_path / "m.gguf"
    assert export(tmp_path, "-o", out, "--format", "gguf") == 0
    first = out.read_bytes()
    assert export(tmp_path, "-o", out, "--format", "gguf", "--dtype", "float16", "--force") == 0
    assert out.read_bytes() != first and gguf.GGUFReader(out).fields["general.file_type"].contents() == 1
