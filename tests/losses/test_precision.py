"""Objectives compute in the promoted precision of their inputs, at least float32.

Engines hand over half-precision log-probs beside float32 old log-probs (verl: bf16
``log_prob``, fp32 ``old_log_prob``). Casting the old log-probs down to bf16 puts the ratio
on a grid of ~0.4% steps, where every gate and clip acts on rounding noise.
"""

from __future__ import annotations

import pytest
import torch

from maspo.losses import aggregate, compute_dtype, get_spec, names, policy_loss

ALL = names()
FP32_RTOL, FP32_ATOL = 1e-5, 1e-6  # float32 rounding of values of order 1 to 10


def engine_batch(dtype: torch.dtype, b: int = 16, t: int = 24, seed: int = 0):
    """Half-precision logp a small step from fp32 old log-probs (ratios within a few % of
    1, where the gates act), per-completion advantages of both signs, ragged mask."""
    g = torch.Generator().manual_seed(seed)
    old = torch.log(torch.rand(b, t, generator=g) * 0.98 + 0.01)  # (B, T) fp32
    logp = (old + 0.05 * torch.randn(b, t, generator=g)).clamp(max=0.0).to(dtype)
    adv = torch.randn(b, generator=g)  # (B,) fp32
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]  # (B, T)
    return logp, old, adv, mask


def run(name, logp, old, adv, mask):
    leaf = logp.detach().clone().requires_grad_(True)
    out = policy_loss(name, leaf, old, adv, mask)
    loss = aggregate(out.per_token, mask, get_spec(name).aggregation)
    loss.backward()
    return out, loss, leaf.grad


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logp_gives_the_float64_loss_and_weight(name, dtype):
    logp, old, adv, mask = engine_batch(dtype)
    out, loss, grad = run(name, logp, old, adv, mask)
    # the reference: the very same input values, computed in float64
    ref, ref_loss, ref_grad = run(name, logp.double(), old.double(), adv.double(), mask)

    assert out.per_token.dtype == torch.float32 and loss.dtype == torch.float32
    assert torch.allclose(out.per_token.double(), ref.per_token, rtol=FP32_RTOL, atol=FP32_ATOL)
    assert torch.allclose(out.weight.double(), ref.weight, rtol=FP32_RTOL, atol=FP32_ATOL)
    assert torch.allclose(loss.double(), ref_loss, rtol=FP32_RTOL, atol=FP32_ATOL)
    for key, value in out.metrics.items():
        assert torch.allclose(value.double(), ref.metrics[key], rtol=FP32_RTOL,
                              atol=FP32_ATOL), key
    # the gradient path reaches logp; it is stored in logp's own dtype (one rounding)
    assert grad.dtype == dtype
    assert torch.allclose(grad.double(), ref_grad, rtol=1e-2, atol=1e-5)
    assert torch.any(grad[mask] != 0)


def test_bf16_ratios_near_one_still_reach_the_maspo_gate():
    # Computed in bf16, the gate exp(-(r - 1)^2 / (2 sigma^2)) of a ratio of 1.003 rounds
    # to exactly 1 and the MASPO loss equals GRPO's. In float32 the gate acts.
    old = torch.full((1, 4), -0.1)
    logp = (old + torch.tensor([[3e-3, -3e-3, 5e-2, -5e-2]])).to(torch.bfloat16)
    adv = torch.tensor([1.0])
    mask = torch.ones(1, 4, dtype=torch.bool)
    out = policy_loss("maspo", logp, old, adv, mask)
    ratio = torch.exp(logp.double() - old.double())
    assert torch.allclose(out.weight.double()[0, 1], ratio[0, 1], rtol=1e-6)  # r < 1: ungated
    assert out.weight[0, 0] < ratio[0, 0]  # r > 1 with A > 0: the gate shrinks the weight
    assert out.metrics["gate_frac"] == 0.5


def test_compute_dtype_is_the_promoted_dtype_at_least_float32():
    bf16, fp16, fp32, fp64 = (torch.zeros(1, dtype=d) for d in
                              (torch.bfloat16, torch.float16, torch.float32, torch.float64))
    assert compute_dtype(bf16, bf16) == torch.float32
    assert compute_dtype(bf16, fp16) == torch.float32
    assert compute_dtype(bf16, fp64) == torch.float64
    assert compute_dtype(fp32, fp32, torch.zeros(1, dtype=torch.int64)) == torch.float32
    logp = torch.zeros(2, 3, requires_grad=True)
    out = policy_loss("grpo", logp, torch.zeros(2, 3, dtype=torch.float64), torch.ones(2),
                      torch.ones(2, 3, dtype=torch.bool))
    assert out.per_token.dtype == torch.float64
