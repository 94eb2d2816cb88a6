"""Contracts every registered objective must keep (docs/objectives.md), over names()."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from maspo.losses import MODES, aggregate, get_spec, names, policy_loss

ALL = names()


def test_registry_holds_every_objective_of_the_spec():
    expected = {"maspo", "dgpo", "grpo", "clip_higher", "dac", "bapo", "sapo", "cispo",
                "gppo", "ce_gppo", "aspo", "gspo"}
    assert set(ALL) == expected


def _extreme_batch():
    """Rows of tokens covering ratios 1e-6..1e6 x old probabilities 1..1e-30 x both signs."""
    log_r = torch.linspace(math.log(1e-6), math.log(1e6), 25, dtype=torch.float32)
    old = torch.log(torch.tensor([1.0, 0.5, 1e-3, 1e-12, 1e-30]))
    adv = torch.tensor([-3.0, -0.5, 0.5, 3.0])
    ol, lr, ad = torch.meshgrid(old, log_r, adv, indexing="ij")  # (5, 25, 4)
    old_logp = ol.permute(0, 2, 1).reshape(20, 25)
    logp = (old_logp + lr.permute(0, 2, 1).reshape(20, 25)).clone().requires_grad_(True)
    advantages = ad.permute(0, 2, 1).reshape(20, 25)
    return logp, old_logp, advantages


@pytest.mark.parametrize("name", ALL)
def test_finite_loss_gradient_and_metrics_at_extreme_ratios(name):
    logp, old, adv = _extreme_batch()
    mask = torch.ones_like(logp, dtype=torch.bool)
    out = policy_loss(name, logp, old, adv, mask)
    loss = aggregate(out.per_token, mask, get_spec(name).aggregation)
    loss.backward()
    assert torch.isfinite(out.per_token).all()
    assert torch.isfinite(logp.grad).all()
    for key, value in out.metrics.items():
        assert value.dim() == 0 and torch.isfinite(value), key
        assert not value.requires_grad, key


@pytest.mark.parametrize("name", ALL)
def test_masked_tokens_have_zero_loss_and_zero_gradient(name):
    g = torch.Generator().manual_seed(0)
    logp = (torch.randn(6, 9, generator=g) - 1).requires_grad_(True)
    old = logp.detach() + 0.5 * torch.randn(6, 9, generator=g)
    adv = torch.randn(6, generator=g)
    mask = torch.rand(6, 9, generator=g) > 0.4
    out = policy_loss(name, logp, old, adv, mask)
    (out.per_token.sum() + aggregate(out.per_token, mask)).backward()
    assert torch.all(out.per_token[~mask] == 0)
    assert torch.all(logp.grad[~mask] == 0)
    assert torch.any(logp.grad[mask] != 0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("old_prob", [1.0, 0.3, 1e-4, 1e-30])
def test_gradient_weight_is_exactly_one_at_unit_ratio(name, old_prob):
    old = torch.full((2, 3), math.log(old_prob), dtype=torch.float64)
    logp = old.clone().requires_grad_(True)
    adv = torch.tensor([1.7, -0.4], dtype=torch.float64)
    out = policy_loss(name, logp, old, adv, torch.ones(2, 3))
    out.per_token.sum().backward()
    weight = -logp.grad / adv[:, None]
    assert torch.equal(weight, torch.ones_like(weight))
    assert torch.equal(out.weight, torch.ones_like(weight))


def test_unknown_objective_is_rejected_with_its_name_and_the_known_ones():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="'ppo2'.*maspo"):
        policy_loss("ppo2", x, x, torch.zeros(1), torch.ones(1, 2))


@pytest.mark.parametrize("name", ALL)
def test_unknown_parameter_is_rejected_by_name(name):
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="'no_such_knob'"):
        policy_loss(name, x, x, torch.zeros(1), torch.ones(1, 2), no_such_knob=1.0)


@pytest.mark.parametrize("name", ALL)
def test_every_parameter_is_validated_by_name(name):
    x = torch.zeros(1, 2)
    for field in dataclasses.fields(get_spec(name).params):
        with pytest.raises(ValueError, match=repr(field.name)):
            policy_loss(name, x, x, torch.zeros(1), torch.ones(1, 2), **{field.name: "bad"})


@pytest.mark.parametrize(("name", "params"), [
    ("grpo", {"clip_low": -0.1}), ("grpo", {"dual_clip": 0.5}), ("maspo", {"sigma_base": 0.0}),
    ("maspo", {"sigma_high": 0.5}), ("maspo", {"mass_adaptive": 1}), ("dgpo", {"m": 0.5}),
    ("sapo", {"tau_pos": 0.0}), ("bapo", {"c_low_max": 0.5}), ("cispo", {"clip_high": -1.0}),
])
def test_out_of_range_values_are_rejected_by_name(name, params):
    x = torch.zeros(1, 2)
    (key,) = params
    with pytest.raises(ValueError, match=repr(key)):
        policy_loss(name, x, x, torch.zeros(1), torch.ones(1, 2), **params)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("mode", MODES)
def test_all_masked_rows_and_zero_advantages_give_finite_zero_loss(name, mode):
    logp = torch.randn(3, 5).requires_grad_(True)
    old = logp.detach() + 0.3
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False  # one row with no completion tokens at all
    zero_adv = torch.zeros(3)
    out = policy_loss(name, logp, old, zero_adv, mask)
    loss = aggregate(out.per_token, mask, mode)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logp.grad == 0)
    for key, value in out.metrics.items():
        assert torch.isfinite(value), key

    empty = torch.zeros(3, 5, dtype=torch.bool)
    out = policy_loss(name, logp, old, torch.randn(3), empty)
    loss = aggregate(out.per_token, empty, mode)
    assert loss.item() == 0.0
    for key, value in out.metrics.items():
        assert torch.isfinite(value), key


def test_shape_mismatches_name_the_argument():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="old_logp"):
        policy_loss("grpo", x, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="advantages"):
        policy_loss("grpo", x, x, torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask"):
        policy_loss("grpo", x, x, torch.zeros(2), torch.ones(3, 3))


@pytest.mark.parametrize("name", ALL)
def test_metrics_report_the_spec_profile(name):
    logp = torch.randn(4, 6).requires_grad_(True)
    old = logp.detach() + 0.2 * torch.randn(4, 6)
    out = policy_loss(name, logp, old, torch.tensor([1.0, -1.0, 0.5, -0.5]), torch.ones(4, 6))
    for key in ("w_mean", "w_mean_pos", "w_mean_neg", "w_mean_tail", "w_mean_head",
                "w_mean_tail_pos", "w_mean_tail_neg", "w_mean_head_pos", "w_mean_head_neg",
                "grad_util", "ratio_mean", "ratio_max", "approx_kl"):
        assert key in out.metrics, key
    assert any(k.endswith("_frac") for k in out.metrics)
    kl = (old - logp.detach()).mean()
    assert torch.isclose(out.metrics["approx_kl"], kl)
