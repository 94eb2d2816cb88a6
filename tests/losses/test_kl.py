"""The k3 KL penalty: hand-computed values, and the clamps that keep one extreme token from
making the loss non-finite."""

from __future__ import annotations

import math

import torch

from maspo.losses import k3_kl
from maspo.losses.kl import KL_MAX


def test_k3_values_and_gradient_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0, -1.5]], dtype=torch.float64)
    kl = k3_kl(logp, ref)
    kl.sum().backward()
    d = [0.0, 1.0, -1.0]  # ref - logp
    assert torch.allclose(kl, torch.tensor([[math.exp(x) - x - 1 for x in d]],
                                           dtype=torch.float64), rtol=1e-12)
    # d k3 / d logp = 1 - exp(d)
    assert torch.allclose(logp.grad, torch.tensor([[1 - math.exp(x) for x in d]],
                                                  dtype=torch.float64), rtol=1e-12)


def test_an_extreme_token_stays_finite_and_capped_without_gradient():
    # the policy dropped a token the reference likes by 200 nats: exp(200) overflows fp32
    logp = torch.tensor([[-201.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.2]])
    kl = k3_kl(logp, ref)
    kl.sum().backward()
    assert torch.isfinite(kl).all() and torch.isfinite(logp.grad).all()
    assert kl[0, 0] == KL_MAX and logp.grad[0, 0] == 0
    assert torch.isclose(kl[0, 1], torch.tensor(math.exp(-0.2) + 0.2 - 1), rtol=1e-5)
    assert logp.grad[0, 1] != 0


def test_half_precision_log_probs_are_computed_in_float32():
    logp = torch.tensor([[-1.0]], dtype=torch.bfloat16)
    ref = torch.tensor([[-1.05]])  # bf16 would round it to -1.0547: k3 20% off
    kl = k3_kl(logp, ref)
    assert kl.dtype == torch.float32
    assert torch.isclose(kl, torch.tensor([[math.exp(-0.05) + 0.05 - 1]]), rtol=1e-3)
