"""A Hugging Face export (hf.py's GPT-2 or Llama state dict and config) as one GGUF file, as llama.cpp's
``convert_hf_to_gguf.py`` writes these architectures, for llama.cpp and ollama.

The tensor names come from the gguf package's own map of Hugging Face names
(``gguf.get_tensor_name_map``). Tensors are written as llama.cpp's converter
writes them: GPT-2's Conv1D weights back in Linear layout, and Llama's q and k
rows permuted within each head from Hugging Face's rotation of the pairs
(i, i + head_size/2) to llama.cpp's rotation of neighbours (2i, 2i + 1). One-
dimensional tensors, norms and GPT-2's position table stay float32.

The tokenizer goes in as llama.cpp's ``gpt2`` (byte-level BPE) vocabulary:
tokens, token types and merges. A byte-level ``tokenizer.json`` goes in as it
is; slo's character-level one is spelled in byte-level form, each character as
the stand-ins of its UTF-8 bytes, with the merges that join a multi-byte
character. gguf cannot write an empty array, and llama.cpp needs the merges
key, so a vocabulary without merges gets one that never applies (a pair of
end-of-text tokens, which the text is never split into). Other tokenizers are
refused by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ... import atomic
from ...errors import RunError, first_line
from ..data.bytelevel import bytes_to_unicode
from ..model.gpt import ModelArgs

DTYPES = ("float32", "float16")
PRE_TOKENIZER = "gpt-2"  # llama.cpp's name for GPT-2's split of words, which ByteLevel's regex is
NEVER_MERGED = "<|endoftext|> <|endoftext|>"  # no piece of text is ever this pair
_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def import_gguf():
    """The gguf package, or RunError saying how to install it."""
    try:
        import gguf
    except ImportError:
        raise RunError("GGUF export needs the gguf package: pip install 'slo[gguf]'") from None
    return gguf


def gguf_tensors(kind: str, args: ModelArgs, hf_state: dict, dtype: str = "float32") -> dict[str, np.ndarray]:
    """GGUF's name -> the array llama.cpp reads, from hf.py's state dict of a GPT-2 or Llama model."""
    gguf = import_gguf()
    arch = gguf.MODEL_ARCH.GPT2 if kind == "gpt2" else gguf.MODEL_ARCH.LLAMA
    names = gguf.get_tensor_name_map(arch, args.n_layer)
    out = {}
    for hf_name, tensor in hf_state.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise RunError(f"the gguf package has no {kind} tensor name for {hf_name}; upgrade it: pip install -U gguf")
        if kind == "gpt2" and hf_name.endswith(_CONV1D):
            tensor = tensor.t()
        elif kind == "llama" and hf_name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
            tensor = interleave_rope(tensor, args.n_head)
        elif kind == "llama" and hf_name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
            tensor = interleave_rope(tensor, args.n_kv_head)
        wide = dtype == "float16" and tensor.dim() > 1 and name != "position_embd.weight"
        out[name] = tensor.detach().to(torch.float16 if wide else torch.float32).contiguous().numpy()
    return out


def interleave_rope(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """q or k rows (heads * hs, ...) from the half-split order of each head (row i rotates with
    i + hs/2) to the interleaved one (2i with 2i + 1): row 2i is row i, row 2i + 1 row i + hs/2."""
    rest = weight.shape[1:]
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *rest).transpose(1, 2).reshape(weight.shape)


# ---------------------------------------------------------------- the tokenizer


def gguf_vocab(tokenizer: dict, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of llama.cpp's gpt2 vocabulary for a tokenizer.json's data, padded
    to the model's vocab_size with unused tokens; RunError naming a tokenizer it cannot express."""
    gguf = import_gguf()
    model = tokenizer.get("model") or {}
    pre, decoder = tokenizer.get("pre_tokenizer"), tokenizer.get("decoder")
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise RunError(f"the tokenizer is a {model.get('type')} model; a GGUF export holds byte-level BPE, "
                       "byte- or character-level tokenizers")
    special = {t["id"]: t["content"] for t in tokenizer.get("added_tokens") or () if t.get("special")}
    by_id = {i: text for text, i in model["vocab"].items()}
    by_id.update({i: text for i, text in special.items()})
    if max(by_id) >= vocab_size:
        raise RunError(f"the tokenizer has {max(by_id) + 1} ids and the model {vocab_size}")
    byte_level = _kind(pre) == "ByteLevel" and _kind(decoder) == "ByteLevel"
    if byte_level and pre.get("use_regex", True) is False and model.get("merges"):
        raise RunError("the tokenizer merges across words (ByteLevel with use_regex=false), which llama.cpp's "
                       "GPT-2 split of words cannot reproduce")
    char_level = pre is None and _kind(decoder) == "Fuse" and not model.get("merges")
    if not byte_level and not char_level:
        raise RunError(f"the tokenizer's pre-tokenizer ({_kind(pre) or 'none'}) and decoder "
                       f"({_kind(decoder) or 'none'}) are not byte-level BPE's (ByteLevel) nor slo's character vocabulary's; llama.cpp's gpt2 "
                       "tokenizer cannot run it")
    spelled, merges = bytes_to_unicode(), [] if char_level else [_merge_text(m) for m in model.get("merges") or ()]
    tokens, types = [], []
    for i in range(vocab_size):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in special and not (char_level and len(text) == 1):
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL)
        else:
            pieces = [spelled[b] for b in text.encode("utf-8")] if char_level else [text]
            merges += ["".join(pieces[:k]) + " " + pieces[k] for k in range(1, len(pieces))]
            tokens.append("".join(pieces))
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types], list(dict.fromkeys(merges)) or [NEVER_MERGED]


def _kind(part) -> str | None:
    return part.get("type") if isinstance(part, dict) else None


def _merge_text(merge) -> str:
    return merge if isinstance(merge, str) else " ".join(merge)  # tokenizers writes pairs as lists since 0.20


# ---------------------------------------------------------------- the file


def write_gguf(out: Path, kind: str, args: ModelArgs, hf_state: dict, tokenizer: dict, eot: int | None,
               dtype: str, name: str) -> int:
    """The GGUF file at out, written beside it under a temporary name and renamed into place; its size."""
    gguf = import_gguf()
    tensors = gguf_tensors(kind, args, hf_state, dtype)
    tokens, types, merges = gguf_vocab(tokenizer, args.vocab_size)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        atomic.sweep(parent, out.name)
        fd, tmp = atomic.make_file(parent, out.name)
        os.close(fd)
    except OSError as e:
        raise RunError(f"cannot write into {parent}: {e.strerror or e}") from None
    try:
        writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2 if kind == "gpt2"
                                                            else gguf.MODEL_ARCH.LLAMA])
        _add_metadata(writer, gguf, kind, args, dtype, name)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(PRE_TOKENIZER)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        if eot is not None:
            writer.add_bos_token_id(eot)
            writer.add_eos_token_id(eot)
        writer.add_add_bos_token(False)  # slo's models were trained without one
        writer.add_add_eos_token(False)
        for tensor_name, data in tensors.items():
            writer.add_tensor(tensor_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is not
        atomic.commit_file(tmp, out)
    except (OSError, ValueError) as e:
        raise RunError(f"could not write {out}: {getattr(e, 'strerror', None) or first_line(e)}; "
                       "nothing was replaced") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out.stat().st_size


def _add_metadata(writer, gguf, kind: str, args: ModelArgs, dtype: str, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(args.block_size)
    writer.add_embedding_length(args.n_embd)
    writer.add_block_count(args.n_layer)
    writer.add_feed_forward_length(args.mlp_hidden)
    writer.add_head_count(args.n_head)
    writer.add_head_count_kv(args.n_kv_head)
    if kind == "gpt2":
        writer.add_layer_norm_eps(args.norm_eps)
    else:
        writer.add_layer_norm_rms_eps(args.norm_eps)
        writer.add_rope_freq_base(args.rope_theta)
        writer.add_rope_dimension_count(args.head_size)
        writer.add_key_length(args.head_size)
        writer.add_value_length(args.head_size)
        writer.add_vocab_size(args.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "float16" else gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
