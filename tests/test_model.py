"""The GPT model: every option's shapes, causality, RoPE, GQA, tying, init, checkpointing, generation."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import slo
from slo.errors import RunError
from slo.schema import CONVERT, KEYS, SHAPE_KEYS
from slo.runner.model.gpt import GPT, KVCache, ModelArgs, apply_rotary, rotary_tables
from tiny_run import tiny_model

VOCAB = 64
TINY = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=VOCAB)

VARIANTS = {
    "default": {},
    "bias": dict(bias=True),
    "rope": dict(use_rope=True),
    "rmsnorm": dict(use_rmsnorm=True),
    "swiglu": dict(use_swiglu=True),
    "gqa": dict(n_kv_head=2),
    "mqa": dict(n_kv_head=1),
    "qk_norm": dict(qk_norm=True),
    "untied": dict(tie_weights=False),
    "dropout": dict(dropout=0.1),
    "checkpointing": dict(activation_checkpointing=True),
    "relu2": dict(activation="relu2"),
    "zero_init_proj": dict(zero_init_proj=True),
    "softcap": dict(logit_softcap=5.0),
    "speedrun": dict(activation="relu2", logit_softcap=5.0, tie_weights=False, use_rope=True),
    "everything": dict(bias=True, use_rope=True, use_rmsnorm=True, use_swiglu=True, n_kv_head=2,
                       qk_norm=True, tie_weights=False, mlp_ratio=3.0, rope_theta=500.0),
}
ATTENTION_VARIANTS = ["default", "rope", "gqa", "mqa", "qk_norm", "everything"]


tiny = functools.partial(tiny_model, TINY)  # tiny(seed, **options): a GPT of this file's shape


def tokens(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_option_builds_and_gives_the_right_shapes(variant):
    model = tiny(**VARIANTS[variant])
    idx = tokens(3, 16)
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, VOCAB)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())

    logits, loss = model(idx[:, :5])  # shorter than block_size, no targets
    assert logits.shape == (3, 5, VOCAB) and loss is None


def test_loss_ignores_targets_of_minus_one():
    model = tiny().eval()
    idx = tokens(2, 8)
    targets = idx.clone()
    targets[:, 4:] = -1
    _, loss = model(idx, targets)
    _, loss_first_half = model(idx[:, :4], idx[:, :4])
    torch.testing.assert_close(loss, loss_first_half)


def test_a_sequence_longer_than_block_size_is_a_run_error():
    with pytest.raises(RunError, match=r"17 tokens.*block_size is 16"):
        tiny()(tokens(1, 17))


def test_parameter_names_are_nanogpts():
    names = set(tiny(bias=True).state_dict())
    for name in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.ln_1.weight",
                 "transformer.h.1.ln_1.bias", "transformer.h.1.attn.c_attn.weight",
                 "transformer.h.1.attn.c_proj.bias", "transformer.h.1.ln_2.weight",
                 "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight",
                 "transformer.ln_f.weight", "lm_head.weight"):
        assert name in names
    assert not any("rope" in n for n in tiny(use_rope=True).state_dict())  # rebuilt, never saved


# ---------------------------------------------------------------- causality


@pytest.mark.parametrize("variant", ATTENTION_VARIANTS)
def test_later_tokens_never_change_earlier_logits(variant):
    model = tiny(**VARIANTS[variant]).eval()
    idx = tokens(2, 16)
    logits, _ = model(idx)
    for t in (1, 7, 15):
        changed = idx.clone()
        changed[:, t:] = (changed[:, t:] + 1) % VOCAB
        new_logits, _ = model(changed)
        torch.testing.assert_close(new_logits[:, :t], logits[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(new_logits[:, t], logits[:, t])  # the changed position does see it


# ---------------------------------------------------------------- RoPE


def _rotated_score(q, k, m: int, n: int, cos, sin) -> torch.Tensor:
    """q at position m dotted with k at position n, both rotated."""
    qm = apply_rotary(q, cos[m:m + 1], sin[m:m + 1])
    kn = apply_rotary(k, cos[n:n + 1], sin[n:n + 1])
    return (qm * kn).sum()


@given(m=st.integers(0, 200), n=st.integers(0, 200), shift=st.integers(0, 50))
def test_rope_scores_depend_only_on_the_offset(m, n, shift):
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=gen, dtype=torch.float64), torch.randn(1, 1, 1, 16, generator=gen, dtype=torch.float64)
    cos, sin = (t.double() for t in rotary_tables(16, 256, 10000.0))
    torch.testing.assert_close(_rotated_score(q, k, m, n, cos, sin), _rotated_score(q, k, m + shift, n + shift, cos, sin),
                               rtol=1e-6, atol=1e-6)


def test_rope_rotates_positions_apart_and_keeps_norms():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=gen), torch.randn(1, 1, 1, 16, generator=gen)
    cos, sin = rotary_tables(16, 32, 10000.0)
    scores = {_rotated_score(q, k, m, 0, cos, sin).item() for m in range(8)}
    assert len(scores) == 8  # different offsets give different scores
    rotated = apply_rotary(q, cos[5:6], sin[5:6])
    torch.testing.assert_close(rotated.norm(), q.norm())
    torch.testing.assert_close(apply_rotary(q, cos[:1], sin[:1]), q)  # position 0 is the identity


def test_rope_needs_an_even_head_size():
    with pytest.raises(RunError, match="even head size"):
        ModelArgs(**{**TINY, "n_embd": 36, "n_head": 4}, use_rope=True)


# ---------------------------------------------------------------- grouped-query attention


def test_n_kv_head_equal_to_n_head_is_full_attention():
    full = tiny().eval()
    explicit = GPT(ModelArgs(**TINY, n_kv_head=4)).eval()
    explicit.load_state_dict(full.state_dict())
    idx = tokens(2, 16)
    torch.testing.assert_close(explicit(idx)[0], full(idx)[0], rtol=0, atol=0)
    assert ModelArgs(**TINY).n_kv_head == 4


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_gqa_equals_full_attention_with_each_kv_head_repeated(n_kv_head):
    gqa = tiny(n_kv_head=n_kv_head).eval()
    full = tiny().eval()
    C, hs, group = 32, 8, 4 // n_kv_head
    state = gqa.state_dict()
    for key, weight in state.items():
        if key.endswith("attn.c_attn.weight"):
            q, k, v = weight.split([C, n_kv_head * hs, n_kv_head * hs])
            repeat = lambda w: w.view(n_kv_head, hs, C).repeat_interleave(group, dim=0).reshape(4 * hs, C)  # noqa: E731
            state[key] = torch.cat([q, repeat(k), repeat(v)])
    full.load_state_dict(state)
    idx = tokens(2, 16)
    torch.testing.assert_close(gqa(idx)[0], full(idx)[0], rtol=1e-5, atol=1e-5)
    assert gqa.num_params() < full.num_params()


# ---------------------------------------------------------------- embeddings, norms, MLP


def test_tied_weights_share_storage_and_untied_do_not():
    tied, untied = tiny(), tiny(tie_weights=False)
    assert tied.transformer.wte.weight is tied.lm_head.weight
    assert tied.transformer.wte.weight.data_ptr() == tied.lm_head.weight.data_ptr()
    assert untied.transformer.wte.weight.data_ptr() != untied.lm_head.weight.data_ptr()
    assert untied.num_params(non_embedding=False) - tied.num_params(non_embedding=False) == VOCAB * 32
    opt = torch.optim.AdamW(tied.parameters(), lr=0.1)
    idx = tokens(2, 16)
    tied(idx, idx)[1].backward()
    opt.step()
    assert tied.transformer.wte.weight is tied.lm_head.weight  # still one tensor after a step


def test_qk_norm_makes_attention_blind_to_the_scale_of_q_and_k():
    idx = tokens(2, 16)
    for qk_norm, should_match in ((True, True), (False, False)):
        model = tiny(qk_norm=qk_norm).eval()
        before = model(idx)[0]
        with torch.no_grad():
            for block in model.transformer.h:
                block.attn.c_attn.weight[:64] *= 5.0  # q and k rows
        after = model(idx)[0]
        assert torch.allclose(before, after, atol=1e-4) == should_match
    attn = tiny(qk_norm=True).transformer.h[0].attn
    assert attn.q_norm.weight.shape == (8,) and attn.k_norm.weight.shape == (8,)


@pytest.mark.parametrize("n_embd, ratio, hidden", [(32, 4.0, 128), (64, 4.0, 192), (96, 4.0, 256),
                                                   (384, 4.0, 1024), (768, 4.0, 2048), (48, 2.0, 64)])
def test_swiglu_hidden_size_is_two_thirds_rounded_up_to_64(n_embd, ratio, hidden):
    model = GPT(ModelArgs(n_layer=1, n_head=4, n_embd=n_embd, block_size=8, vocab_size=8, use_swiglu=True, mlp_ratio=ratio))
    mlp = model.transformer.h[0].mlp
    assert mlp.c_fc.out_features == 2 * hidden  # gate and up in one matmul
    assert mlp.c_proj.in_features == hidden


@given(n_embd=st.integers(1, 4096), ratio=st.floats(0.25, 8.0))
def test_swiglu_hidden_size_rule(n_embd, ratio):
    hidden = ModelArgs(n_layer=1, n_head=1, n_embd=n_embd, use_swiglu=True, mlp_ratio=ratio).mlp_hidden
    raw = 2 * ratio * n_embd / 3
    assert hidden % 64 == 0 and raw - 1e-6 <= hidden < raw + 64


def test_gelu_mlp_hidden_is_mlp_ratio_times_n_embd():
    assert tiny().transformer.h[0].mlp.c_fc.out_features == 128
    assert tiny(mlp_ratio=2.5).transformer.h[0].mlp.c_fc.out_features == 80


def test_rmsnorm_replaces_layernorm():
    assert isinstance(tiny(use_rmsnorm=True).transformer.ln_f, torch.nn.RMSNorm)
    assert isinstance(tiny().transformer.ln_f, torch.nn.LayerNorm)
    assert tiny().transformer.ln_f.bias is None and tiny(bias=True).transformer.ln_f.bias is not None


@pytest.mark.parametrize("init_std", [0.02, 0.05])
def test_init_std_and_scaled_residual_projections(init_std):
    torch.manual_seed(0)
    model = GPT(ModelArgs(n_layer=4, n_head=4, n_embd=256, block_size=32, vocab_size=512, bias=True, init_std=init_std))
    block = model.transformer.h[0]
    residual_std = init_std / math.sqrt(2 * 4)
    for weight, std in ((block.attn.c_attn.weight, init_std), (block.mlp.c_fc.weight, init_std),
                        (model.transformer.wte.weight, init_std), (model.transformer.wpe.weight, init_std),
                        (block.attn.c_proj.weight, residual_std), (block.mlp.c_proj.weight, residual_std)):
        assert weight.std().item() == pytest.approx(std, rel=0.05)
        assert abs(weight.mean().item()) < std / 10
    assert torch.count_nonzero(block.attn.c_attn.bias) == 0
    assert torch.all(block.ln_1.weight == 1) and torch.all(block.ln_1.bias == 0)


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    idx = tokens(2, 16)
    results = []
    for on in (False, True):
        model = tiny(dropout=0.1, use_rope=True, activation_checkpointing=on).train()
        torch.manual_seed(5)  # the same dropout masks: recomputation replays the RNG
        _, loss = model(idx, idx)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_off, grads_off), (loss_on, grads_on) = results
    torch.testing.assert_close(loss_on, loss_off, rtol=0, atol=0)
    for name in grads_off:
        torch.testing.assert_close(grads_on[name], grads_off[name], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- counting


def test_num_params_and_flops_per_token():
    model = tiny()
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params() == total - 16 * 32  # positions left out, the tied embedding kept
    assert tiny(tie_weights=False).num_params() == tiny(tie_weights=False).num_params(non_embedding=False) - 16 * 32 - VOCAB * 32
    assert tiny(use_rope=True).num_params() == tiny(use_rope=True).num_params(non_embedding=False)
    assert model.flops_per_token() == 6 * model.num_params() + 12 * 2 * 32 * 16


# ---------------------------------------------------------------- ModelArgs


def test_model_args_from_config():
    cfg = slo.loads("MODEL n_layer=3 n_head=4 n_embd=64 use_rope=true bias=true dropout=0.1\n"
                    "ADVANCED qk_norm=true tie_weights=false rope_theta=500 mlp_ratio=3\n"
                    "DATA block_size=32\n")
    args = ModelArgs.from_config(cfg, vocab_size=300)
    assert (args.n_layer, args.n_head, args.n_embd, args.block_size, args.vocab_size) == (3, 4, 64, 32, 300)
    assert args.use_rope and args.bias and args.qk_norm and not args.tie_weights
    assert (args.dropout, args.rope_theta, args.mlp_ratio, args.n_kv_head) == (0.1, 500.0, 3.0, 4)
    assert ModelArgs.from_config(slo.loads("ADVANCED n_kv_head=4\n"), 10).n_kv_head == 4


def test_model_args_from_nanogpt_dict_and_back():
    nano = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, bias=True, vocab_size=65, dropout=0.0)
    args = ModelArgs.from_dict(nano)
    assert args.n_kv_head == 4 and args.tie_weights and not args.use_rope and args.norm_eps == 1e-5
    assert ModelArgs.from_dict(args.to_dict()) == args
    with pytest.raises(RunError, match="unknown model_args flash"):
        ModelArgs.from_dict({**nano, "flash": True})
    with pytest.raises(RunError, match="n_embd=30 is not divisible by n_head=4"):
        ModelArgs.from_dict({**nano, "n_embd": 30})
    with pytest.raises(RunError, match="n_kv_head=3 does not divide n_head=4"):
        ModelArgs.from_dict({**nano, "n_kv_head": 3})
    with pytest.raises(RunError, match="dropout='0.1' must be a float; norm_eps=0 must be > 0"):
        ModelArgs.from_dict({**nano, "dropout": "0.1", "norm_eps": 0})
    # every field by its key's type and range: a tensor for a bool, a string for a size, infinity
    with pytest.raises(RunError, match=r"use_swiglu=tensor\(\[0., 0.\]\) must be a bool"):
        ModelArgs.from_dict({**nano, "use_swiglu": torch.zeros(2)})
    with pytest.raises(RunError, match="n_layer='2' must be an int; mlp_ratio=inf must be a finite number"):
        ModelArgs.from_dict({**nano, "n_layer": "2", "mlp_ratio": math.inf})



@given(name=st.sampled_from(SHAPE_KEYS),
       value=st.one_of(st.none(), st.booleans(), st.integers(-2, 10 ** 6), st.floats(allow_nan=True),
                       st.text(max_size=8), st.just(torch.zeros(2)), st.lists(st.integers(), max_size=2)))
def test_model_args_take_a_field_exactly_when_the_schema_does(name, value):
    """A checkpoint's model_args field is accepted only with its key's type (no bool for an int, no
    str for anything but a str key) and inside its range; anything else is a RunError, never another."""
    nano = dict(n_layer=2, n_head=2, n_embd=8, block_size=8, vocab_size=16)
    key = KEYS[name]
    typed = (value is None and key.optional and name != "vocab_size") or (
        isinstance(value, (int, float) if key.type is float else key.type)
        and isinstance(value, bool) == (key.type is bool))
    try:
        schema_ok = typed and (value is None or CONVERT[name](value) == value)
    except ValueError:  # out of range, or not finite
        schema_ok = False
    try:
        ModelArgs.from_dict({**nano, name: value})
    except RunError as e:
        assert not schema_ok or "divisible" in str(e) or "divide" in str(e) or "even head size" in str(e)
    else:
        assert schema_ok

# ---------------------------------------------------------------- generation


@pytest.mark.parametrize("variant", ["default", "rope", "gqa", "everything", "speedrun"])
@pytest.mark.parametrize("temperature, top_k", [(0.0, None), (1.0, 5), (0.8, None)])
def test_sampling_with_the_cache_equals_sampling_without_it(variant, temperature, top_k):
    model = tiny(**VARIANTS[variant]).double().eval()  # float64: both paths agree far below any tie
    prompt = tokens(2, 3)
    outs = []
    for use_cache in (True, False):
        gen = torch.Generator().manual_seed(7)
        outs.append(model.generate(prompt, 40, temperature=temperature, top_k=top_k, generator=gen, use_cache=use_cache))
    assert outs[0].shape == (2, 43)  # well past block_size=16
    assert torch.equal(outs[0], outs[1])


def test_greedy_generation_takes_the_argmax_and_crops_long_prompts():
    model = tiny().eval()
    prompt = tokens(1, 20)  # longer than block_size
    out = model.generate(prompt, 3, temperature=0)
    assert torch.equal(out[:, :20], prompt)
    expected = model(prompt[:, -16:])[0][:, -1].argmax(-1)
    assert out[0, 20] == expected[0]


def test_top_k_keeps_only_the_k_likeliest_tokens():
    model = tiny().eval()
    prompt = tokens(1, 4)
    allowed = set(model(prompt)[0][0, -1].topk(3).indices.tolist())
    gen = torch.Generator().manual_seed(0)
    firsts = {model.generate(prompt, 1, temperature=5.0, top_k=3, generator=gen)[0, -1].item() for _ in range(30)}
    assert firsts <= allowed and len(firsts) > 1


def test_cache_fed_in_chunks_equals_one_pass():
    model = tiny(use_rope=True, n_kv_head=2).double().eval()
    idx = tokens(2, 12)
    with torch.no_grad():
        whole = model._hidden(idx)
        caches = [KVCache(16) for _ in model.transformer.h]
        parts = [model._hidden(idx[:, :5], 0, caches), model._hidden(idx[:, 5:9], 5, caches),
                 model._hidden(idx[:, 9:10], 9, caches), model._hidden(idx[:, 10:], 10, caches)]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole)


def test_bfloat16_autocast_runs_forward_and_cached_generation():
    model = tiny(use_rope=True, n_kv_head=2, qk_norm=True).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, loss = model(tokens(2, 16), tokens(2, 16))
        out = model.generate(tokens(2, 3), 20, temperature=0)
    assert torch.isfinite(loss) and logits.shape == (2, 16, VOCAB) and out.shape == (2, 23)


# ---------------------------------------------------------------- shipped sizes


@pytest.mark.parametrize("n_layer, n_embd", [(6, 384), (12, 768)], ids=["standard", "large"])
def test_standard_and_large_shapes_take_a_step(n_layer, n_embd):
    torch.manual_seed(0)
    model = GPT(ModelArgs(n_layer=n_layer, n_head=n_layer, n_embd=n_embd, block_size=8, vocab_size=256))
    idx, targets = tokens(1, 8, seed=1) % 256, tokens(1, 8, seed=2) % 256
    _, loss = model(idx, targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert loss.item() == pytest.approx(math.log(256), rel=0.1)  # a fresh model is near uniform
    assert model.num_params() > 12 * n_layer * n_embd ** 2 * 0.99


def test_rmsnorm_of_bfloat16_activations_runs_in_float32_without_a_warning():
    import warnings

    from torch.nn import functional as F

    from slo.runner.model.gpt import RMSNorm

    norm = RMSNorm(8, eps=1e-5)
    x = torch.randn(2, 8).bfloat16()  # what autocast hands it, beside its float32 weight
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it cannot use its fused kernel
        y = norm(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, F.rms_norm(x.float(), (8,), norm.weight, 1e-5).bfloat16())
