"""The GPT model, built from the MODEL and ADVANCED keys.

The default architecture is nanoGPT's, parameter names included, so a nanoGPT
``ckpt.pt`` loads; the options swap in RMSNorm, SwiGLU, rotary positions,
grouped-query attention and per-head q/k normalisation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ...errors import RunError
from ...schema import CONVERT, KEYS, SHAPE_KEYS
from ..device import gib, is_allocation_failure, memory_total
from ...outdir.files import shown


DEFAULT_VOCAB_SIZE = 50304  # nanoGPT's GPT-2 vocabulary padded to a multiple of 64
# The keys that shape the network: every MODEL and ADVANCED key, and the context length.


class _Shape:
    """The methods of ModelArgs, whose fields are the schema's SHAPE_KEYS (made below)."""

    def __post_init__(self):
        if self.n_kv_head is None:
            object.__setattr__(self, "n_kv_head", self.n_head)
        problems = [p for p in map(self._field_problem, SHAPE_KEYS) if p]
        if not problems:
            if self.n_embd % self.n_head:
                problems.append(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
            elif self.use_rope and self.head_size % 2:
                problems.append(f"use_rope needs an even head size, got n_embd/n_head={self.head_size}")
            if self.n_head % self.n_kv_head:
                problems.append(f"n_kv_head={self.n_kv_head} does not divide n_head={self.n_head}")
        if problems:
            raise RunError("invalid model arguments: " + "; ".join(problems))

    def _field_problem(self, name: str) -> str | None:
        """What is wrong with one field, by its key's type and range in the schema (a checkpoint's
        model_args skip the config's checks): a bool that is a tensor, a size that is a string,
        a ratio that is infinite."""
        key, value = KEYS[name], getattr(self, name)
        if value is None and key.optional and name != "vocab_size":
            return None
        wanted = (int, float) if key.type is float else key.type
        if not isinstance(value, wanted) or isinstance(value, bool) != (key.type is bool):
            return f"{name}={shown(value)} must be {'an' if key.type is int else 'a'} {key.type.__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name}={value} must be a finite number"
        try:
            CONVERT[name](value)
        except ValueError:
            return f"{name}={shown(value)} must be {key.range_text()}"
        return None

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        """GELU: mlp_ratio * n_embd; SwiGLU: 2/3 of that, rounded up to a multiple of 64."""
        if self.use_swiglu:
            raw = round(2 * self.mlp_ratio * self.n_embd / 3, 6)  # round away float noise before ceil
            return 64 * math.ceil(raw / 64)
        return max(1, round(self.mlp_ratio * self.n_embd))

    @classmethod
    def from_config(cls, cfg, vocab_size: int) -> "ModelArgs":
        """From a resolved ``slo.Config``; ``vocab_size`` is the resolved vocabulary
        (the config's when set, else the dataset's)."""
        return cls(**{**{name: cfg[name] for name in SHAPE_KEYS}, "vocab_size": vocab_size})

    @classmethod
    def from_dict(cls, d: dict) -> "ModelArgs":
        """From a checkpoint's ``model_args`` (slo's, or nanoGPT's shorter one:
        the keys it lacks take their defaults)."""
        if not isinstance(d, dict):
            raise RunError(f"model_args must be a dict, not a {type(d).__name__}: "
                           "the checkpoint was not written by slo or nanoGPT")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RunError(f"unknown model_args {', '.join(map(str, unknown))} in the checkpoint; "
                           f"known: {', '.join(sorted(known))}. Was it made by a newer slo?")
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain types only, for a checkpoint's ``model_args``."""
        return dataclasses.asdict(self)


BYTES_TO_TRAIN = 16  # per parameter: float32 weights, gradients and AdamW's two moments
BYTES_TO_LOAD = 8  # per parameter: the weights, and the checkpoint's copy they are loaded from


def build_model(args: ModelArgs, device: torch.device, bytes_per_param: int = BYTES_TO_TRAIN,
                batch_size: int = 0) -> "GPT":
    """GPT(args) on device, refused with advice when its parameters (and the activations of a
    training micro-batch of batch_size rows) cannot fit in the device's memory. Parameters are
    counted on the meta device, so nothing is allocated to find out."""
    with torch.device("meta"):
        n = GPT(args).num_params(non_embedding=False)
    weights = n * bytes_per_param
    activations = activation_bytes(args, batch_size)
    total = memory_total(device)
    lower = "vocab_size or n_embd" if args.vocab_size * args.n_embd > n // 2 else "n_layer or n_embd"
    if total is not None and weights + activations > total:
        if weights >= activations:
            use = "training" if bytes_per_param == BYTES_TO_TRAIN else "its weights"
            raise RunError(f"the model has {n:,} parameters: {gib(weights)} for {use}, more than the "
                           f"{gib(total)} of {device}; lower {lower}")
        raise RunError(f"a micro-batch of batch_size={batch_size} rows of block_size={args.block_size} tokens needs "
                       f"about {gib(activations)} for activations, more than the {gib(total)} of {device} holds "
                       f"with the model; lower batch_size (and raise gradient_accumulation_steps to keep the "
                       "tokens per step)")
    try:
        return GPT(args).to(device)
    except (MemoryError, RuntimeError) as e:
        if not is_allocation_failure(e):
            raise
        raise RunError(f"out of memory making the model ({n:,} parameters) on {device}; lower {lower}") from None


def activation_bytes(args: ModelArgs, batch_size: int) -> int:
    """A low estimate of the memory one training micro-batch keeps for the backward pass: 34 bytes
    per token and unit of n_embd in each block (Korthikanti et al.'s count in 16-bit, attention by a
    fused kernel), and the float32 logits with their gradient."""
    tokens = batch_size * args.block_size
    return tokens * (args.n_layer * 34 * args.n_embd + 8 * args.vocab_size)


def _shape_field(key: str) -> tuple:
    if key == "vocab_size":  # None in a config means "from the dataset"; a model has a number
        return key, int, field(default=DEFAULT_VOCAB_SIZE)
    spec = KEYS[key]
    return key, spec.type | None if spec.optional else spec.type, field(default=spec.default)


ModelArgs = dataclasses.make_dataclass("ModelArgs", [_shape_field(k) for k in SHAPE_KEYS], bases=(_Shape,),
                                       frozen=True)
ModelArgs.__module__ = __name__  # pickled by reference, like a class written out
ModelArgs.__doc__ = "Everything that shapes the network, one field per shape key. ``n_kv_head`` None resolves to ``n_head``."


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm computed in its weight's dtype (float32) and cast back, as Llama's is: under bfloat16
    autocast its input is bfloat16 and its weight float32, a mix torch's fused kernel refuses (with a
    warning, every call)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.to(self.weight.dtype), self.normalized_shape, self.weight, self.eps).to(x.dtype)


def make_norm(args: ModelArgs, dim: int) -> nn.Module:
    if args.use_rmsnorm:
        return RMSNorm(dim, eps=args.norm_eps)
    return nn.LayerNorm(dim, eps=args.norm_eps, bias=args.bias)


def rotary_tables(head_size: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of each position's rotation angles, each (length, head_size/2)."""
    inv_freq = theta ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + hs/2) of x (B, nh, T, hs) by the angles of its T positions."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class KVCache:
    """Keys and values of the positions seen so far, for one layer during generation."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.length = 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nkv, T, hs); return every key and value so far (B, nkv, length, hs)."""
        B, nkv, T, hs = k.shape
        if self.k is None:  # allocated on first use, in the dtype attention runs in (autocast or not)
            self.k = k.new_empty(B, nkv, self.max_len, hs)
            self.v = v.new_empty(B, nkv, self.max_len, hs)
        self.k[:, :, self.length:self.length + T] = k
        self.v[:, :, self.length:self.length + T] = v
        self.length += T
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


class CausalSelfAttention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = args.n_head, args.n_kv_head, args.head_size
        self.kv_dim = args.n_kv_head * args.head_size
        # q, k and v in one matmul; k and v have n_kv_head heads
        self.c_attn = nn.Linear(args.n_embd, args.n_embd + 2 * self.kv_dim, bias=args.bias)
        self.c_proj = nn.Linear(args.n_embd, args.n_embd, bias=args.bias)
        self.q_norm = make_norm(args, args.head_size) if args.qk_norm else None
        self.k_norm = make_norm(args, args.head_size) if args.qk_norm else None
        self.dropout = args.dropout
        self.resid_dropout = nn.Dropout(args.dropout)

    def forward(self, x, rope=None, cache: KVCache | None = None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split([C, self.kv_dim, self.kv_dim], dim=2)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        mask, causal = None, True
        if cache is not None:
            start = cache.length
            k, v = cache.append(k, v)  # (B, nkv, start + T, hs)
            if start and T == 1:  # one new query sees every cached key
                causal = False
            elif start:  # queries sit at the end of the keys: bottom-right aligned causal mask
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
                causal = False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_head != self.n_head,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))


class ReLU2(nn.Module):
    """ReLU squared: relu(x) ** 2 (modded-nanogpt's MLP activation)."""

    def forward(self, x):
        return F.relu(x).square()


def make_activation(args: ModelArgs) -> nn.Module:
    """The MLP's activation module when it is not SwiGLU, by the activation key."""
    if args.activation == "relu2":
        return ReLU2()
    return nn.GELU(approximate="tanh" if args.activation == "gelu_tanh" else "none")


class MLP(nn.Module):
    """GELU (or ReLU squared) MLP, or SwiGLU with the gate and up projections fused in c_fc."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.swiglu = args.use_swiglu
        hidden = args.mlp_hidden
        self.c_fc = nn.Linear(args.n_embd, 2 * hidden if self.swiglu else hidden, bias=args.bias)
        self.gelu = None if self.swiglu else make_activation(args)  # nanoGPT's name, whatever the activation
        self.c_proj = nn.Linear(hidden, args.n_embd, bias=args.bias)
        self.dropout = nn.Dropout(args.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = self.gelu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.ln_1 = make_norm(args, args.n_embd)
        self.attn = CausalSelfAttention(args)
        self.ln_2 = make_norm(args, args.n_embd)
        self.mlp = MLP(args)

    def forward(self, x, rope=None, cache: KVCache | None = None):
        x = x + self.attn(self.ln_1(x), rope, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        layers = {"wte": nn.Embedding(args.vocab_size, args.n_embd)}
        if not args.use_rope:
            layers["wpe"] = nn.Embedding(args.block_size, args.n_embd)
        # nanoGPT's order, so the parameter order of an optimizer state matches too
        layers.update(
            drop=nn.Dropout(args.dropout),
            h=nn.ModuleList(Block(args) for _ in range(args.n_layer)),
            ln_f=make_norm(args, args.n_embd),
        )
        self.transformer = nn.ModuleDict(layers)
        self.lm_head = nn.Linear(args.n_embd, args.vocab_size, bias=False)
        if args.tie_weights:
            self.transformer.wte.weight = self.lm_head.weight
        if args.use_rope:  # not persistent: rebuilt from the args, so checkpoints keep nanoGPT's keys
            cos, sin = rotary_tables(args.head_size, args.block_size, args.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init: normal(0, init_std), residual projections scaled by 1/sqrt(2 * n_layer)
        (zero with zero_init_proj)."""
        std = self.args.init_std
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                scale = 1 / math.sqrt(2 * self.args.n_layer) if name.endswith("c_proj") else 1.0
                nn.init.normal_(module.weight, mean=0.0, std=std * scale)
                if self.args.zero_init_proj and name.endswith("c_proj"):
                    nn.init.zeros_(module.weight)  # drawn first all the same: the other layers' init is unchanged
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.reset_parameters()

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; non_embedding leaves out the lookup tables (positions, and
        the token embedding when it is not also the output head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.args.tie_weights:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward and backward), PaLM-style: 6N plus attention."""
        a = self.args
        return 6 * self.num_params() + 12 * a.n_layer * a.n_embd * a.block_size

    def _check_length(self, T: int) -> None:
        if T > self.args.block_size:
            raise RunError(f"cannot forward a sequence of {T} tokens: the model's block_size is "
                           f"{self.args.block_size}; crop the input to its last {self.args.block_size} tokens")

    def _hidden(self, idx: torch.Tensor, start: int = 0, caches: list[KVCache] | None = None) -> torch.Tensor:
        """Final hidden states (B, T, n_embd) of tokens idx (B, T) at positions start..start+T-1."""
        T = idx.size(1)
        x = self.transformer.wte(idx)  # (B, T, n_embd)
        rope = None
        if self.args.use_rope:
            rope = (self.rope_cos[start:start + T], self.rope_sin[start:start + T])  # (T, hs/2) each
        else:
            pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
            x = x + self.transformer.wpe(pos)  # (T, n_embd) broadcast over B
        x = self.transformer.drop(x)
        recompute = self.args.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.transformer.h):
            if recompute:
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope, None if caches is None else caches[i])
        return self.transformer.ln_f(x)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output head on final hidden states; with logit_softcap, cap * tanh(logits / cap)."""
        logits = self.lm_head(hidden)
        cap = self.args.logit_softcap
        if cap:
            logits = cap * torch.tanh(logits / cap)
        return logits

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, vocab_size) at every position, and the mean cross entropy
        against targets (B, T) (-1 ignored) when given, else None."""
        self._check_length(idx.size(1))
        logits = self._logits(self._hidden(idx))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate_steps(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                       top_k: int | None = None, generator: torch.Generator | None = None,
                       use_cache: bool = True) -> Iterator[torch.Tensor]:
        """Yield each new token (B, 1) after idx (B, T).

        With the cache, each step runs only the newest token; once the sequence
        outgrows block_size, the context is cropped to the last block_size tokens
        and recomputed, exactly as without the cache.
        """
        block_size = self.args.block_size
        caches = None
        last = None
        for _ in range(max_new_tokens):
            if use_cache and caches is not None and caches[0].length < block_size:
                logits = self._logits(self._hidden(last, caches[0].length, caches))
            else:
                context = idx[:, -block_size:]
                caches = [KVCache(block_size) for _ in self.transformer.h] if use_cache else None
                logits = self._logits(self._hidden(context, 0, caches)[:, -1:])
            last = sample_next(logits[:, -1, :], temperature, top_k, generator)  # (B, 1)
            idx = torch.cat((idx, last), dim=1)
            yield last

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """idx (B, T) followed by max_new_tokens sampled tokens: (B, T + max_new_tokens).
        temperature 0 is greedy; top_k keeps the k likeliest tokens."""
        new = list(self.generate_steps(idx, max_new_tokens, temperature, top_k, generator, use_cache))
        return torch.cat([idx, *new], dim=1)


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (B, vocab): (B, 1)."""
    if temperature < torch.finfo(torch.float32).tiny:  # 0, or so small that 1/temperature is inf: greedy
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float()
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # max first: a tiny temperature stays finite
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
