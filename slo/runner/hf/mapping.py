"""Hugging Face's GPT-2 and Llama to slo's GPT and back: one mapping of names and shapes each way.

GPT-2 is nanoGPT's default model, names included; only its Conv1D weights are
stored transposed. Llama's q, k and v are one fused ``c_attn`` in slo, its gate
and up projections one ``c_fc`` (gate first). Both rotate the pairs
(i, i + head_size/2) of each head (HF's ``rotate_half``), with the same
frequencies, so no permutation of q and k is needed.

GPT-2's ``gelu_new`` and ``gelu_pytorch_tanh`` are slo's ``activation=gelu_tanh``,
its ``gelu`` slo's exact default; an export names the one its model computes.

The tokenizer meta ``read_hf_folder`` returns, for a folder with ``tokenizer.json``::

    {"tokenizer": "hf", "vocab_size": N, "tokenizer_json": "<the file's text>"}

plus ``"eot_id": ID`` when ``config.json`` names an integer ``eos_token_id``;
N is one past the largest id the tokenizer defines (added tokens included).
A GPT-2 folder without ``tokenizer.json`` whose vocabulary holds GPT-2's gives
``{"tokenizer": "gpt2", "vocab_size": 50257}``; any other folder without one, None.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import pickle
import zipfile
from pathlib import Path
from typing import Iterator

import torch

from ...errors import RunError, first_line
from ...schema import TRAINING_ONLY_KEYS
from ..model.gpt import GPT, SHAPE_KEYS, ModelArgs
from ..checkpoint.safeload import unreadable_weights
from ..data.text_tokenizers import GPT2_VOCAB_SIZE

ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
NAMES = {"gpt2": "GPT-2", "llama": "Llama"}
# the classes whose weights load (the bare models have no head: fine when it is tied)
_CLASSES = {"gpt2": {"GPT2LMHeadModel", "GPT2Model"}, "llama": {"LlamaForCausalLM", "LlamaModel"}}
_PREFIX = {"gpt2": "transformer.", "llama": "model."}
# buffers some files carry, which are not weights: GPT-2's causal masks, old Llamas' inverse frequencies
_BUFFERS = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# what transformers assumes for a key a config.json leaves out
_DEFAULTS = {
    "gpt2": {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
             "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
             "tie_word_embeddings": True, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
             "add_cross_attention": False},
    "llama": {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": None, "head_dim": None, "hidden_act": "silu",
              "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False},
}
_GELU = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}  # HF's name: slo's
WEIGHT_SHAPE_KEYS = tuple(k for k in SHAPE_KEYS if k not in TRAINING_ONLY_KEYS)  # the keys the weights decide
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def model_type(config: dict, source: str) -> str:
    """"gpt2" or "llama"; RunError naming any other architecture."""
    if not isinstance(config, dict):
        raise RunError(f"{source}: config.json must hold an object, not a {type(config).__name__}")
    kind, classes = config.get("model_type"), config.get("architectures") or []
    classes = classes if isinstance(classes, list) else [classes]
    if not isinstance(kind, str) or kind not in _CLASSES:
        raise RunError(f"{source}: model_type {json.dumps(kind)} ({', '.join(map(str, classes)) or 'no architectures'})"
                       " is not one slo reads; slo reads GPT-2 (model_type \"gpt2\") and Llama (\"llama\")")
    other = [str(c) for c in classes if not isinstance(c, str) or c not in _CLASSES[kind]]
    if other:
        raise RunError(f"{source}: architecture {', '.join(other)} is not a causal language model slo reads; "
                       f"slo reads {ARCHITECTURES[kind]}")
    return kind


def _get(config: dict, kind: str, key: str, types: tuple, optional: bool = False, *, source: str):
    value = config.get(key, _DEFAULTS[kind][key])
    if (value is None and optional) or (isinstance(value, bool) == (bool in types) and isinstance(value, types)):
        return value
    names = " or ".join(t.__name__ for t in types)
    raise RunError(f"{source}: {key} must be {'an' if names[0] in 'aeiou' else 'a'} {names}, not {json.dumps(value)}")


def shape_from_hf_config(config: dict, source: str) -> dict:
    """The shape keys (WEIGHT_SHAPE_KEYS) of a GPT-2 or Llama ``config.json``; RunError naming what
    slo's GPT cannot compute (another architecture, rope scaling, a head_dim of its own, ...)."""
    kind = model_type(config, source)
    shape = _gpt2_shape(config, source) if kind == "gpt2" else _llama_shape(config, source)
    try:
        ModelArgs(**shape)
    except (RunError, TypeError) as e:
        raise RunError(f"{source}: {first_line(e)}") from None
    return shape


def _gpt2_shape(config: dict, source: str) -> dict:
    get = functools.partial(_get, config, "gpt2", source=source)
    refused = []
    act = get("activation_function", (str,))
    if act not in _GELU:
        refused.append(f"activation_function={act!r} (slo's MLP computes GELU)")
    for key, wanted in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                        ("add_cross_attention", False)):
        if get(key, (bool,)) != wanted:
            refused.append(f"{key}={str(not wanted).lower()}")
    _refuse(refused, "GPT-2", source)
    n_embd = get("n_embd", (int,))
    inner = get("n_inner", (int,), True)
    return _complete({**({"activation": _GELU[act]} if "activation" in SHAPE_KEYS else {}),
        "n_layer": get("n_layer", (int,)), "n_head": get("n_head", (int,)), "n_embd": n_embd,
        "vocab_size": get("vocab_size", (int,)), "block_size": get("n_positions", (int,)), "bias": True,
        "norm_eps": float(get("layer_norm_epsilon", (int, float))),
        "tie_weights": get("tie_word_embeddings", (bool,)),
        "mlp_ratio": 4.0 if inner is None else _mlp_ratio(n_embd, inner, False, "n_inner", source),
    })


def _llama_shape(config: dict, source: str) -> dict:
    get = functools.partial(_get, config, "llama", source=source)
    n_embd, n_head = get("hidden_size", (int,)), get("num_attention_heads", (int,))
    refused = []
    act = get("hidden_act", (str,))
    if act != "silu":
        refused.append(f"hidden_act={act!r} (slo's SwiGLU uses silu)")
    head_dim = get("head_dim", (int,), True)
    if head_dim is not None and n_head and head_dim * n_head != n_embd:
        refused.append(f"head_dim={head_dim} (slo's heads are hidden_size / num_attention_heads = "
                       f"{n_embd / n_head:g} wide)")
    attention_bias, mlp_bias = get("attention_bias", (bool,)), get("mlp_bias", (bool,))
    if attention_bias != mlp_bias:
        refused.append(f"attention_bias={str(attention_bias).lower()} with mlp_bias={str(mlp_bias).lower()} "
                       "(slo's bias key puts biases in both or neither)")
    theta, rope_refused = _rope_theta(config, source)
    _refuse(refused + rope_refused, "Llama", source)
    n_kv = get("num_key_value_heads", (int,), True)
    return _complete({
        "n_layer": get("num_hidden_layers", (int,)), "n_head": n_head, "n_embd": n_embd,
        "n_kv_head": n_head if n_kv is None else n_kv, "vocab_size": get("vocab_size", (int,)),
        "block_size": get("max_position_embeddings", (int,)), "bias": attention_bias,
        "use_rope": True, "use_rmsnorm": True, "use_swiglu": True, "rope_theta": theta,
        "norm_eps": float(get("rms_norm_eps", (int, float))), "tie_weights": get("tie_word_embeddings", (bool,)),
        "mlp_ratio": _mlp_ratio(n_embd, get("intermediate_size", (int,)), True, "intermediate_size", source),
    })


def _rope_theta(config: dict, source: str) -> tuple[float, list[str]]:
    """RoPE's base, from ``rope_theta`` (transformers 4) or ``rope_parameters`` (transformers 5),
    and the rope scalings slo cannot compute."""
    theta = _get(config, "llama", "rope_theta", (int, float), source=source)
    refused = []
    scaling = config.get("rope_scaling")
    if scaling is not None:
        refused.append(f"rope_scaling={json.dumps(scaling)} (slo's RoPE has no scaling)")
    params = config.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise RunError(f"{source}: rope_parameters must be an object, not {json.dumps(params)}")
        if params.get("rope_type", "default") != "default" and scaling is None:
            refused.append(f"rope_parameters={json.dumps(params)} (slo's RoPE has no scaling)")
        if "rope_theta" in params:
            theta = _get(params, "llama", "rope_theta", (int, float), source=f"{source}: rope_parameters")
    return float(theta), refused


def _refuse(refused: list[str], name: str, source: str) -> None:
    if refused:
        raise RunError(f"{source}: slo's GPT cannot compute this {name} model's {'; '.join(refused)}")


def _complete(shape: dict) -> dict:
    """Every weight-decided shape key: the ones not given take their defaults (False for the options)."""
    defaults = {f: ModelArgs.__dataclass_fields__[f].default for f in WEIGHT_SHAPE_KEYS}
    return {**defaults, "use_rope": False, "use_rmsnorm": False, "use_swiglu": False, "qk_norm": False,
            "n_kv_head": shape["n_head"], **shape}


def _mlp_ratio(n_embd: int, hidden: int, swiglu: bool, key: str, source: str) -> float:
    """The shortest mlp_ratio (4.0 when it does) for which slo's MLP is ``hidden`` wide."""
    if n_embd >= 1 and hidden >= 1:
        top = (1.5 * hidden if swiglu else hidden + 0.5) / n_embd  # past this the width is more than hidden
        for digits in range(8):
            for ratio in (4.0, math.floor(top * 10**digits) / 10**digits, round(top, digits)):
                if ratio > 0 and ModelArgs(n_head=1, n_embd=n_embd, mlp_ratio=ratio,
                                           use_swiglu=swiglu).mlp_hidden == hidden:
                    return ratio
    rule = "a multiple of 64 (SwiGLU's width is 2/3 of mlp_ratio * n_embd rounded up to one)" if swiglu else \
        "mlp_ratio * n_embd rounded"
    raise RunError(f"{source}: {key}={hidden} is not a width slo's MLP can have with n_embd={n_embd}: "
                   f"slo's width is {rule}")


# ---------------------------------------------------------------- the names, both ways


def _table(kind: str, args: ModelArgs) -> Iterator[tuple[str, tuple[str, ...], bool]]:
    """(slo name, the HF names that make it, in order along dim 0, whether HF stores it transposed),
    made as needed: a config.json with a wild n_layer fails at the first layer the weights lack."""
    if kind == "gpt2":  # nanoGPT's names are GPT-2's, whose LayerNorms and Linears always have biases
        layers = (f"h.{i}.{m}.{p}" for i in range(args.n_layer) for p in ("weight", "bias")
                  for m in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"))
        for n in itertools.chain(("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"), layers):
            yield f"transformer.{n}", (f"transformer.{n}",), n.split(".", 2)[-1] in _CONV1D
    else:
        yield "transformer.wte.weight", ("model.embed_tokens.weight",), False
        for i in range(args.n_layer):
            h, m = f"transformer.h.{i}.", f"model.layers.{i}."
            for p in ("weight", "bias") if args.bias else ("weight",):
                yield from [(h + f"attn.c_attn.{p}", tuple(m + f"self_attn.{x}_proj.{p}" for x in "qkv"), False),
                            (h + f"attn.c_proj.{p}", (m + f"self_attn.o_proj.{p}",), False),
                            (h + f"mlp.c_fc.{p}", (m + f"mlp.gate_proj.{p}", m + f"mlp.up_proj.{p}"), False),
                            (h + f"mlp.c_proj.{p}", (m + f"mlp.down_proj.{p}",), False)]
            yield h + "ln_1.weight", (m + "input_layernorm.weight",), False
            yield h + "ln_2.weight", (m + "post_attention_layernorm.weight",), False
        yield "transformer.ln_f.weight", ("model.norm.weight",), False
    if not args.tie_weights:
        yield "lm_head.weight", ("lm_head.weight",), False


def state_from_hf(hf_state: dict, config: dict) -> dict:
    """slo's state dict (its names, Linear layout, fused q/k/v and gate/up) from a GPT-2 or Llama
    state dict; the tensors keep their dtype. RunError naming missing, unknown or misshapen tensors."""
    kind = model_type(config, "config.json")
    args = ModelArgs(**shape_from_hf_config(config, "config.json"))
    prefix = _PREFIX[kind]
    named = {}
    for key, value in hf_state.items():
        if not isinstance(value, torch.Tensor):
            raise RunError(f"the weights' entry {key!r} is a {type(value).__name__}, not a tensor")
        if key.endswith(_BUFFERS):
            continue
        named[key if key.startswith((prefix, "lm_head.")) else prefix + key] = value  # a bare model's names
    if args.tie_weights:
        named.pop("lm_head.weight", None)  # tied: the embedding is the head, as transformers ties it
    state, used = {}, set()
    for slo_name, hf_names, transposed in _table(kind, args):
        missing = [n for n in hf_names if n not in named]
        if missing:
            raise RunError(f"the weights have no {', '.join(missing)}: they do not belong to this config.json")
        parts = [named[n] for n in hf_names]
        used.update(hf_names)
        try:
            state[slo_name] = (parts[0].t() if transposed else parts[0]) if len(parts) == 1 else torch.cat(parts)
        except RuntimeError as e:
            raise RunError(f"the weights {', '.join(hf_names)} do not fit together ({first_line(e)})") from None
    unknown = sorted(set(named) - used)
    if unknown:
        raise RunError(f"the weights hold tensors a {NAMES[kind]} model of this config.json has no place for: "
                       f"{_some(unknown)}")
    if args.tie_weights:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    _check_shapes(state, args)
    return {k: v.contiguous() for k, v in state.items()}


def _check_shapes(state: dict, args: ModelArgs) -> None:
    with torch.device("meta"):  # the shapes of slo's state dict, nothing allocated
        expected = {k: tuple(v.shape) for k, v in GPT(args).state_dict().items()}
    wrong = [f"{k} {tuple(state[k].shape) if k in state else 'missing'} vs {shape}"
             for k, shape in expected.items() if k not in state or tuple(state[k].shape) != shape]
    wrong += [f"{k} (unexpected)" for k in state if k not in expected]
    if wrong:
        raise RunError(f"the weights do not fit the model their config describes: {_some(wrong)}")


def _some(items: list[str]) -> str:
    return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")


# ---------------------------------------------------------------- slo -> Hugging Face


def export_blockers(args: ModelArgs) -> dict[str, list[str]]:
    """For "gpt2" and "llama", the options of args that architecture cannot express (empty: it can)."""
    gpt2 = [f"{k}=True" for k in ("use_rope", "use_rmsnorm", "use_swiglu", "qk_norm") if getattr(args, k)]
    if args.n_kv_head != args.n_head:
        gpt2.append(f"n_kv_head={args.n_kv_head} (GPT-2 has no grouped-query attention)")
    if getattr(args, "activation", "gelu") not in ("gelu", "gelu_tanh"):
        gpt2.append(f"activation={args.activation} (GPT-2's MLP is GELU)")
    llama = [f"{k}=False" for k in ("use_rope", "use_rmsnorm", "use_swiglu") if not getattr(args, k)]
    if args.qk_norm:
        llama.append("qk_norm=True")
    capped = [f"logit_softcap={args.logit_softcap:g} (no soft-capping of logits)"] if args.logit_softcap else []
    return {"gpt2": gpt2 + capped, "llama": llama + capped}


def hf_from_slo(args: ModelArgs, state: dict) -> tuple[dict, dict]:
    """(config.json's dict, the state dict transformers loads) for a slo model: GPT-2 for a nanoGPT-shaped
    one, Llama for RoPE + RMSNorm + SwiGLU (grouped-query attention included). RunError naming the
    options when neither fits. A GPT-2 export of a model without biases gets zero biases."""
    blockers = export_blockers(args)
    kind = next((k for k in ("gpt2", "llama") if not blockers[k]), None)
    if kind is None:
        raise RunError("this model cannot be exported to Hugging Face: as GPT-2 it has "
                       f"{', '.join(blockers['gpt2'])}; as Llama it has {', '.join(blockers['llama'])}. "
                       "GPT-2 is LayerNorm, GELU and learned positions; Llama is RMSNorm, SwiGLU and RoPE, "
                       "and neither has qk_norm, relu2 or logit_softcap")
    _check_shapes(state, args)
    hf_state = {}
    for slo_name, hf_names, transposed in _table(kind, args):
        if slo_name not in state:  # a GPT-2 bias of a model without biases: zeros compute the same
            weight = state[slo_name.removesuffix("bias") + "weight"]
            hf_state[hf_names[0]] = torch.zeros(weight.shape[0], dtype=weight.dtype)
            continue
        tensor = state[slo_name]
        if len(hf_names) > 1:
            kv = args.n_kv_head * args.head_size
            parts = tensor.split([args.n_embd, kv, kv] if len(hf_names) == 3 else [args.mlp_hidden] * 2)
            hf_state.update((n, p.clone()) for n, p in zip(hf_names, parts))  # no shared storage in a file
        else:
            hf_state[hf_names[0]] = tensor.t().contiguous() if transposed else tensor.contiguous()
    dtype = str(state["transformer.wte.weight"].dtype).removeprefix("torch.")
    config = _gpt2_config(args) if kind == "gpt2" else _llama_config(args)
    return {"architectures": [ARCHITECTURES[kind]], "model_type": kind, **config, "torch_dtype": dtype,
            "dtype": dtype, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}, hf_state


def _gpt2_config(args: ModelArgs) -> dict:
    return {"vocab_size": args.vocab_size, "n_positions": args.block_size, "n_ctx": args.block_size,  # as GPT-2's
            "n_embd": args.n_embd, "n_layer": args.n_layer, "n_head": args.n_head, "n_inner": args.mlp_hidden,
            "activation_function": "gelu_new" if getattr(args, "activation", "gelu") == "gelu_tanh" else "gelu",
            "layer_norm_epsilon": args.norm_eps, "tie_word_embeddings": args.tie_weights,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False, "use_cache": True}


def _llama_config(args: ModelArgs) -> dict:
    return {"vocab_size": args.vocab_size, "hidden_size": args.n_embd, "intermediate_size": args.mlp_hidden,
            "num_hidden_layers": args.n_layer, "num_attention_heads": args.n_head,
            "num_key_value_heads": args.n_kv_head, "head_dim": args.head_size, "hidden_act": "silu",
            "max_position_embeddings": args.block_size, "rms_norm_eps": args.norm_eps,
            # transformers 4's RoPE, which 5 reads (4 ignores 5's rope_parameters, llama.cpp's converter warns)
            "rope_theta": args.rope_theta, "rope_scaling": None,
            "attention_bias": args.bias, "mlp_bias": args.bias, "attention_dropout": 0.0,
            "tie_word_embeddings": args.tie_weights, "use_cache": True}


# ---------------------------------------------------------------- a model folder


def read_hf_folder(folder: Path) -> tuple[dict, dict, dict | None]:
    """(shape keys, slo state dict, tokenizer meta or None) of a local Hugging Face model folder:
    config.json and model.safetensors (sharded or not) or pytorch_model.bin. RunError naming a
    missing or damaged file, or what the model has that slo cannot compute."""
    folder = Path(folder)
    config = read_folder_json(folder / "config.json")
    shape = shape_from_hf_config(config, str(folder / "config.json"))
    try:
        state = state_from_hf(read_weights(folder), config)
    except RunError as e:
        raise RunError(f"{folder}: {e}") from None
    return shape, state, tokenizer_meta(folder, config)


def read_folder_json(path: Path, text: str | None = None):
    """The JSON in path (whose text may be given); RunError naming the file when it is missing or damaged."""
    if text is None and not path.is_file():
        raise RunError(f"no {path.name} in {path.parent}: a Hugging Face model folder holds config.json and "
                       "model.safetensors (or pytorch_model.bin)")
    try:
        return json.loads(path.read_text(encoding="utf-8") if text is None else text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RunError(f"{path} is not valid JSON ({first_line(e)}); download it again") from None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None


def read_weights(folder: Path) -> dict:
    """Every tensor of the folder's weights, from the first of WEIGHT_FILES it holds."""
    name = next((n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if name is None:
        raise RunError(f"no weights in {folder}: looked for {', '.join(WEIGHT_FILES)}")
    if not name.endswith(".index.json"):
        return _load(folder / name)
    index = read_folder_json(folder / name)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
        raise RunError(f"{folder / name} has no weight_map of tensor names to files; download it again")
    state = {}
    for shard in sorted(set(weight_map.values())):
        path = folder / shard
        if Path(shard).name != shard or not path.is_file():
            raise RunError(f"{folder / name} names the shard {shard!r}, which is not in {folder}; download it again")
        state.update(_load(path))
    return state


def import_safetensors():
    """safetensors (with safetensors.torch), or RunError saying how to install it."""
    try:
        import safetensors.torch
    except ImportError:
        raise RunError("Hugging Face weights need safetensors: pip install safetensors") from None
    return safetensors


def _load(path: Path) -> dict:
    safetensors = import_safetensors()
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as e:
        raise RunError(f"cannot read {path}: {e.strerror}; check the file's permissions") from None
    except (safetensors.SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError,
            zipfile.BadZipFile, KeyError, IndexError, TypeError, AttributeError, MemoryError) as e:
        raise unreadable_weights(path, e) from None
    if not isinstance(state, dict):
        raise RunError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return state


def tokenizer_meta(folder: Path, config: dict) -> dict | None:
    """The meta (see the module's docstring) of the tokenizer that comes with a model folder."""
    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise RunError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        meta = {"tokenizer": "hf", "vocab_size": tokenizer_vocab_size(read_folder_json(path, text), path),
                "tokenizer_json": text}
        eos = config.get("eos_token_id")
        if isinstance(eos, int) and not isinstance(eos, bool):
            meta["eot_id"] = eos
        return meta
    vocab = config.get("vocab_size", _DEFAULTS["gpt2"]["vocab_size"])
    if config.get("model_type") == "gpt2" and isinstance(vocab, int) and vocab >= GPT2_VOCAB_SIZE:
        return {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE}
    return None


def tokenizer_vocab_size(data, path: Path) -> int:
    """One past the largest id a tokenizer.json defines, its added tokens included."""
    data = data if isinstance(data, dict) else {}
    vocab = data["model"].get("vocab") if isinstance(data.get("model"), dict) else None
    ids = [i for i in vocab.values() if isinstance(i, int)] if isinstance(vocab, dict) else []
    if isinstance(vocab, list) and vocab:  # Unigram: [[piece, score], ...], numbered in order
        ids = [len(vocab) - 1]
    added = data.get("added_tokens") if isinstance(data.get("added_tokens"), list) else []
    ids += [t["id"] for t in added if isinstance(t, dict) and isinstance(t.get("id"), int)]
    if not ids:
        raise RunError(f"{path} defines no tokens (no model.vocab); it is not a tokenizers tokenizer.json")
    return max(ids) + 1
