"""AdamW parameter groups and the learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import slo
from slo.errors import RunError
from slo.runner.model.gpt import GPT, ModelArgs
from slo.runner.model.optimizers import Schedule, make_optimizer, param_groups

LR, MIN_LR = 1e-3, 1e-4


def schedule(shape, warmup=10, decay=100, cooldown=0, decay_lr=True):
    return Schedule(LR, shape, decay_lr, warmup, decay, MIN_LR, cooldown)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(ModelArgs(n_layer=2, n_head=2, n_embd=16, vocab_size=32, block_size=8, bias=True))


def test_matrices_decay_and_vectors_do_not(model):
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(no_decay["params"]) > 0  # biases and LayerNorm gains
    counted = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert counted == sum(p.numel() for p in model.parameters())  # the tied embedding once


def test_fused_adamw_on_this_cpu(model):
    train = slo.loads("TRAIN learning_rate=1e-3 beta2=0.99").train
    optimizer, kind = make_optimizer(model, train, torch.device("cpu"))
    assert kind == "fused"
    assert optimizer.defaults["betas"] == (0.9, 0.99)
    x = torch.randint(0, 32, (2, 8))
    model(x, x)[1].backward()
    before = model.lm_head.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.lm_head.weight)


def test_fused_and_foreach_adamw_take_the_same_step(model):
    other = GPT(model.args)
    other.load_state_dict(model.state_dict())
    x = torch.randint(0, 32, (2, 8))
    steps = []
    for m, fused in ((model, True), (other, False)):
        opt = torch.optim.AdamW(param_groups(m, 0.1), lr=1e-2, fused=fused, foreach=None if fused else True)
        for _ in range(3):
            m(x, x)[1].backward()
            opt.step()
            opt.zero_grad()
        steps.append(m.lm_head.weight.detach())
    torch.testing.assert_close(steps[0], steps[1])


@pytest.mark.parametrize("shape", ["cosine", "linear", "constant", "wsd"])
def test_warmup_is_linear_from_above_zero_to_the_peak(shape):
    s = schedule(shape, warmup=10, cooldown=20 if shape == "wsd" else 0)
    assert s(0) == pytest.approx(LR / 11)
    assert [s(i) for i in range(10)] == pytest.approx([LR * (i + 1) / 11 for i in range(10)])
    assert s(10) == pytest.approx(LR)


@pytest.mark.parametrize("shape", ["cosine", "linear", "wsd"])
def test_decaying_shapes_end_at_min_lr_and_stay_there(shape):
    s = schedule(shape, cooldown=20 if shape == "wsd" else 0)
    assert s(100) == MIN_LR and s(10_000) == MIN_LR


def test_cosine_and_linear_midpoints():
    mid = (10 + 100) / 2
    assert schedule("cosine")(mid) == pytest.approx((LR + MIN_LR) / 2)
    assert schedule("linear")(mid) == pytest.approx((LR + MIN_LR) / 2)
    quarter = 10 + 90 / 4
    assert schedule("linear")(quarter) == pytest.approx(MIN_LR + 0.75 * (LR - MIN_LR))
    assert schedule("cosine")(quarter) > schedule("linear")(quarter)  # cosine stays high longer


def test_constant_holds_the_peak_after_warmup():
    s = schedule("constant")
    assert {s(i) for i in range(10, 1000, 37)} == {LR}


def test_wsd_is_stable_then_decays_over_the_cooldown():
    s = schedule("wsd", warmup=10, decay=100, cooldown=20)
    assert {s(i) for i in range(10, 81)} == {LR}  # the stable phase
    assert s(90) == pytest.approx((LR + MIN_LR) / 2)  # halfway through the cooldown
    assert [s(i) for i in range(80, 101)] == sorted((s(i) for i in range(80, 101)), reverse=True)
    assert s(100) == MIN_LR


def test_wsd_without_cooldown_holds_until_the_end():
    s = schedule("wsd", cooldown=0)
    assert s(99) == LR and s(100) == MIN_LR


def test_decay_lr_false_is_the_learning_rate_at_every_step():
    s = schedule("cosine", decay_lr=False)
    assert {s(i) for i in (0, 5, 10, 50, 100, 10_000)} == {LR}


def test_schedule_from_config_reads_the_sections():
    cfg = slo.loads("TRAIN learning_rate=2e-3\nLR_SCHEDULE schedule=wsd warmup_iters=5 lr_decay_iters=50 "
                    "cooldown_iters=10 min_lr=1e-5")
    s = Schedule.from_config(cfg.train, cfg.lr_schedule)
    assert (s.learning_rate, s.shape, s.warmup_iters, s.lr_decay_iters, s.cooldown_iters, s.min_lr) == \
        (2e-3, "wsd", 5, 50, 10, 1e-5)


def test_unknown_shape_is_a_run_error():
    with pytest.raises(RunError, match="unknown schedule 'step'"):
        schedule("step")


def test_warmup_equal_to_decay_never_divides_by_zero():
    s = schedule("cosine", warmup=10, decay=10)
    assert s(9) == pytest.approx(LR * 10 / 11) and s(10) == MIN_LR


@given(shape=st.sampled_from(["cosine", "linear", "constant", "wsd"]),
       warmup=st.integers(0, 50), decay_extra=st.integers(0, 200), cooldown_share=st.floats(0, 1),
       it=st.integers(0, 400))
def test_every_schedule_stays_between_min_lr_and_the_peak(shape, warmup, decay_extra, cooldown_share, it):
    decay = warmup + decay_extra
    cooldown = int(cooldown_share * decay_extra) if shape == "wsd" else 0
    s = schedule(shape, warmup, decay, cooldown)
    lr = s(it)
    assert 0 < lr <= LR * (1 + 1e-12) and math.isfinite(lr)
    if it >= warmup:
        assert lr >= MIN_LR * (1 - 1e-12)
        assert s(it + 1) <= lr * (1 + 1e-12)  # never rises after warmup
