"""Autograd gradient weights against hand-computed closed forms, region by region.

Expected values are written out by hand from docs/objectives.md (with `math` for exp/sqrt),
never by calling the library again.
"""

from __future__ import annotations

import math

import pytest
import torch
from weight_probe import close, grad_weights

from maspo.losses import aggregate, policy_loss


def test_grpo_weights_per_region():
    r = [0.5, 1.1, 1.3]  # A > 0: below the band keeps r, inside keeps r, above is clipped
    assert close(grad_weights("grpo", r, 1.0), [0.5, 1.1, 0.0])
    r = [0.7, 0.9, 2.5, 3.5]  # A < 0: clipped below 0.8, r inside, r up to dual clip 3, 0 past
    assert close(grad_weights("grpo", r, -1.0), [0.0, 0.9, 2.5, 0.0])
    assert close(grad_weights("grpo", [3.5], -1.0, dual_clip=None), [3.5])


def test_clip_higher_raises_only_the_upper_bound():
    assert close(grad_weights("clip_higher", [1.25, 1.3], 1.0), [1.25, 0.0])
    assert close(grad_weights("clip_higher", [0.79, 0.81], -1.0), [0.0, 0.81])


def test_dac_bounds_follow_the_old_probability():
    # q = 1: low = 0.5 + 0.5 sqrt(1 - 0.8) = 0.72361, high = 0.5 + 0.5 sqrt(2.12) = 1.22801
    assert close(grad_weights("dac", [1.22, 1.23], 1.0, 1.0), [1.22, 0.0])
    assert close(grad_weights("dac", [0.72, 0.73], -1.0, 1.0), [0.0, 0.73])
    # q = 0.01: low = 0.5 (1 - 80 < 0), high = 0.5 + 0.5 sqrt(1 + 112) = 5.81507
    assert close(grad_weights("dac", [5.8, 5.82], 1.0, 0.01), [5.8, 0.0])
    assert close(grad_weights("dac", [0.49, 0.51], -1.0, 0.01), [0.0, 0.51])
    # q = 1e-4: 0.5 + 0.5 sqrt(11201) = 53.4 is capped at high_cap = 10
    assert close(grad_weights("dac", [9.9, 10.1], 1.0, 1e-4), [9.9, 0.0])


def test_bapo_raises_the_lower_bound_until_positives_reach_the_target():
    # positives (A = 1) at r = 1.0, 1.5; negatives (A = -1) at r = 1.0, 0.7, 0.85.
    ratio = [1.0, 1.5, 1.0, 0.7, 0.85]
    adv = [1.0, 1.0, -1.0, -1.0, -1.0]
    logp = torch.log(torch.tensor([ratio], dtype=torch.float64)).requires_grad_(True)
    a = torch.tensor([adv], dtype=torch.float64)
    out = policy_loss("bapo", logp, torch.zeros_like(logp), a, torch.ones_like(logp))
    # c_high = 1.2 keeps only r = 1.0 of the positives (P = 1); the share 1 / (1 + N)
    # first reaches 0.5 when N = 1, i.e. once c_low = 0.9 drops r = 0.7 and r = 0.85.
    assert math.isclose(out.metrics["bound_low"].item(), 0.9, abs_tol=1e-9)
    assert math.isclose(out.metrics["bound_high"].item(), 1.2, abs_tol=1e-9)
    assert math.isclose(out.metrics["pos_share"].item(), 0.5, abs_tol=1e-9)
    out.per_token.sum().backward()
    assert close(-logp.grad[0] / a[0], [1.0, 0.0, 1.0, 0.0, 0.0])


def test_bapo_then_raises_the_upper_bound():
    ratio = [1.0, 1.5, 1.0, 0.7, 0.85]
    adv = [1.0, 1.0, -1.0, -1.0, -1.0]
    w = grad_weights("bapo", ratio, adv, target=0.6)
    # with c_low at its maximum 0.9 the share is 0.5 < 0.6; c_high must rise to >= 1.5
    assert close(w, [1.0, 1.5, 1.0, 0.0, 0.0])


def test_gppo_keeps_bounded_gradients_on_clipped_tokens():
    assert close(grad_weights("gppo", [1.1, 1.5], 1.0), [1.1, 1.28])
    assert close(grad_weights("gppo", [0.5, 5.0, 11.0], -1.0), [0.8, 5.0, 0.0])


def test_ce_gppo_scales_the_kept_gradients():
    assert close(grad_weights("ce_gppo", [1.1, 1.5], 1.0), [1.1, 1.0 * 1.2])
    assert close(grad_weights("ce_gppo", [0.5, 0.9], -1.0), [0.5 * 0.8, 0.9])
    assert close(grad_weights("ce_gppo", [0.5], -1.0, beta_low=0.25), [0.25 * 0.8])


def test_aspo_flips_the_ratio_of_positive_tokens():
    # A > 0: w = 1/r inside, 0 above 1 + 0.2, capped at the dual clip 3 when 1/r > 3
    assert close(grad_weights("aspo", [0.5, 1.1, 1.3, 0.2], 1.0), [2.0, 1 / 1.1, 0.0, 3.0])
    # A < 0: exactly GRPO
    assert close(grad_weights("aspo", [0.7, 2.0, 4.0], -1.0), [0.0, 2.0, 0.0])


def test_cispo_clips_the_weight_but_never_drops_a_token():
    assert close(grad_weights("cispo", [1.5, 0.1, 1.1], 1.0), [1.2, 0.1, 1.1])
    assert close(grad_weights("cispo", [1.5, 0.1], -1.0, clip_low=0.2), [1.2, 0.8])


def test_sapo_soft_gate():
    s = 1 / (1 + math.exp(-0.5))  # A > 0, tau = 1, r = 1.5
    t = 1 / (1 + math.exp(1.05 * 0.5))  # A < 0, tau = 1.05, r = 0.5
    assert close(grad_weights("sapo", [1.5], 1.0), [1.5 * 4 * s * (1 - s)])
    assert close(grad_weights("sapo", [0.5], -1.0), [0.5 * 4 * t * (1 - t)])


def test_dgpo_decays_instead_of_clipping():
    # LN: w = r^2 / 0.8 (n = 1); inside: r
    assert close(grad_weights("dgpo", [0.5, 0.9], -1.0), [0.25 / 0.8, 0.9])
    # HP: w = 1.2^(1/2) r^(1/2) (m = 2); inside: r
    assert close(grad_weights("dgpo", [2.0, 1.1], 1.0), [math.sqrt(2.4), 1.1])
    # the other directions are plain r (no dual clip)
    assert close(grad_weights("dgpo", [0.5], 1.0), [0.5])
    assert close(grad_weights("dgpo", [2.0, 50.0], -1.0), [2.0, 50.0])
    assert close(grad_weights("dgpo", [0.5], -1.0, n=2), [0.125 / 0.64])
    assert close(grad_weights("dgpo", [2.0], 1.0, m=1), [1.2])


def _maspo_w(r, adv, q, *, mass=True, risk=True, sigma_base=1.0, alpha=0.3, sigma_high=10.0):
    """docs/objectives.md's MASPO weight, written out for one token."""
    gated = (adv > 0 and r > 1) or (adv < 0 and r < 1)
    if not gated:
        return r
    m = min(max(sigma_base / q**alpha, sigma_base), sigma_high) if mass else sigma_base
    if not risk:
        k = 1.0
    elif adv > 0:
        k = min(max(1 + 0.03 * adv, 0.1), 10.0)
    else:
        k = min(max(1 / (1 - 0.03 * adv), 0.1), 10.0)
    sigma = m * k
    return math.exp(-((r - 1) ** 2) / (2 * sigma**2)) * r


@pytest.mark.parametrize(("r", "adv", "q"), [
    (1.5, 1.0, 1.0),  # gated positive, mass = 1, risk 1.03
    (1.5, 1.0, 0.01),  # rare token: mass 0.01^-0.3 = 3.98
    (3.0, 1.0, 1e-6),  # very rare: mass 63 capped at sigma_high 10
    (0.5, -1.0, 1.0),  # gated negative: risk 1 / 1.03
    (0.2, -1.0, 0.05),
    (2.0, 100.0, 1.0),  # risk_pos = 1 + 3 = 4
    (0.5, -1000.0, 1.0),  # risk_neg = 1/31 clamped to adv_low 0.1
    (0.5, 1.0, 0.5),  # not gated (positive, r < 1): w = r
    (1.5, -1.0, 0.5),  # not gated (negative, r > 1): w = r
])
def test_maspo_weight_matches_the_spec(r, adv, q):
    assert close(grad_weights("maspo", [r], adv, q), [_maspo_w(r, adv, q)])


def test_maspo_ablations():
    args = ([1.5], 1.0, 0.01)
    assert close(grad_weights("maspo", *args, mass_adaptive=False),
                 [_maspo_w(1.5, 1.0, 0.01, mass=False)])
    assert close(grad_weights("maspo", *args, risk_control=False),
                 [_maspo_w(1.5, 1.0, 0.01, risk=False)])
    # both off: a plain Gaussian gate of width sigma_base = 1
    assert close(grad_weights("maspo", *args, mass_adaptive=False, risk_control=False),
                 [math.exp(-0.125) * 1.5])


def test_maspo_gives_rare_tokens_and_confident_positives_a_wider_gate():
    w = grad_weights("maspo", [2.0, 2.0], 1.0, [0.9, 0.001])
    assert w[1] > w[0]  # rare token keeps more of its gradient
    w = grad_weights("maspo", [2.0, 2.0], [0.5, 50.0], 0.5)
    assert w[1] > w[0]  # larger verified advantage: wider gate
    gate_pos = grad_weights("maspo", [1.5], 1.0, 1.0)[0] / 1.5
    gate_neg = grad_weights("maspo", [0.5], -1.0, 1.0)[0] / 0.5
    assert gate_pos > gate_neg  # same |r - 1|: positives trusted more than negatives


def test_gspo_uses_the_sequence_ratio():
    s1 = math.exp(1e-4)  # inside [1 - 3e-4, 1 + 4e-4]
    s2 = math.exp(1e-3)  # above: positives clipped, negatives keep s
    s3 = math.exp(-1e-3)  # below: negatives clipped, positives keep s
    log_r = torch.tensor([[2e-4, 0.0, 1e-4], [1e-3, 1e-3, 1e-3], [-1e-3, -1e-3, -1e-3]],
                         dtype=torch.float64)
    for adv, expected in ((1.0, [s1, 0.0, s3]), (-1.0, [s1, s2, 0.0])):
        logp = log_r.clone().requires_grad_(True)
        a = torch.full((3,), adv, dtype=torch.float64)
        out = policy_loss("gspo", logp, torch.zeros_like(logp), a, torch.ones_like(logp))
        out.per_token.sum().backward()
        w = -logp.grad / adv
        for row, value in enumerate(expected):
            assert close(w[row], [value] * 3)


def test_gspo_token_form_equals_the_sequence_objective_gradient():
    g = torch.Generator().manual_seed(1)
    logp = (1e-4 * torch.randn(4, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]],
                        dtype=torch.bool)
    adv = torch.tensor([1.0, -0.5, 2.0, -1.0], dtype=torch.float64)
    out = policy_loss("gspo", logp, torch.zeros_like(logp), adv, mask)
    aggregate(out.per_token, mask, "seq-mean-token-mean").backward()
    ours = logp.grad.clone()
    # GSPO eq. 7 directly: -mean_i A_i * s_i with s_i differentiable (all inside the band)
    logp.grad = None
    lengths = mask.sum(-1)
    s = torch.exp((logp * mask).sum(-1) / lengths)
    (-(adv * s).mean()).backward()
    assert torch.allclose(ours, logp.grad, rtol=1e-10, atol=1e-14)


def _value_and_weight(name, r, adv, q=1.0, **params):
    logp = torch.log(torch.tensor([[r]], dtype=torch.float64) * q).requires_grad_(True)
    old = torch.full_like(logp, math.log(q))
    a = torch.tensor([adv], dtype=torch.float64)
    out = policy_loss(name, logp, old, a, torch.ones_like(logp), **params)
    out.per_token.sum().backward()
    return out.per_token.item(), (-logp.grad / adv).item()


@pytest.mark.parametrize(("name", "boundary", "adv", "params"), [
    ("dgpo", 0.8, -1.0, {}), ("dgpo", 1.2, 1.0, {}), ("dgpo", 1.2, 1.0, {"m": 1.0}),
    ("dgpo", 0.7, -2.0, {"n": 3.0, "clip_low": 0.3}),
    ("maspo", 1.0, 1.0, {}), ("maspo", 1.0, -1.0, {}),
    ("sapo", 1.0, 1.0, {}), ("gppo", 1.28, 1.0, {}), ("gppo", 0.8, -1.0, {}),
    ("cispo", 1.2, 1.0, {}), ("aspo", 1 / 3.0, 1.0, {}),
])
def test_weight_and_value_are_continuous_at_region_boundaries(name, boundary, adv, params):
    eps = 1e-9
    v_lo, w_lo = _value_and_weight(name, boundary * (1 - eps), adv, **params)
    v_hi, w_hi = _value_and_weight(name, boundary * (1 + eps), adv, **params)
    assert math.isclose(w_lo, w_hi, rel_tol=1e-6)
    assert math.isclose(v_lo, v_hi, rel_tol=1e-6, abs_tol=1e-8)
