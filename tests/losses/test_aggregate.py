"""Aggregation modes: hand values and micro-batch invariance with global counts."""

from __future__ import annotations

import pytest
import torch

from maspo.losses import MODES, aggregate, get_spec, names, policy_loss

PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(("mode", "expected"), [
    ("token-mean", (1 + 2 + 3 + 4) / 4),
    ("seq-mean-token-mean", ((1 + 2 + 3) / 3 + 4 / 1) / 2),
    ("seq-mean-token-sum", (6 + 4) / 2),
    ("seq-mean-token-sum-norm", (6 + 4) / (2 * 3)),
])
def test_modes_by_hand(mode, expected):
    assert aggregate(PER_TOKEN, MASK, mode).item() == pytest.approx(expected)


def test_explicit_counts_and_norm_len():
    assert aggregate(PER_TOKEN, MASK, "token-mean", num_tokens=10).item() == pytest.approx(1.0)
    assert aggregate(PER_TOKEN, MASK, "seq-mean-token-sum", num_seqs=5).item() == pytest.approx(2)
    value = aggregate(PER_TOKEN, MASK, "seq-mean-token-sum-norm", num_seqs=2, norm_len=10)
    assert value.item() == pytest.approx(0.5)


def test_unknown_mode_and_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="'token-sum'"):
        aggregate(PER_TOKEN, MASK, "token-sum")
    with pytest.raises(ValueError, match="num_tokens"):
        aggregate(PER_TOKEN, MASK, num_tokens=0)


def _batch(seed=0, b=8, t=7):
    g = torch.Generator().manual_seed(seed)
    logp = (torch.randn(b, t, generator=g, dtype=torch.float64) - 1).requires_grad_(True)
    old = logp.detach() + 0.4 * torch.randn(b, t, generator=g, dtype=torch.float64)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return logp, old, adv, mask


# BAPO re-chooses its bounds on every call (per micro-batch), by design; see its docstring.
PER_TOKEN_OBJECTIVES = [n for n in names() if n != "bapo"]


@pytest.mark.parametrize("name", PER_TOKEN_OBJECTIVES)
@pytest.mark.parametrize("mode", MODES)
def test_micro_batches_with_global_counts_equal_the_full_batch(name, mode):
    logp, old, adv, mask = _batch()
    full = aggregate(policy_loss(name, logp, old, adv, mask).per_token, mask, mode)
    full.backward()
    full_grad = logp.grad.clone()
    logp.grad = None

    counts = {"num_tokens": mask.sum(), "num_seqs": (mask.sum(-1) > 0).sum(),
              "norm_len": mask.shape[1]}
    total = torch.zeros((), dtype=torch.float64)
    for rows in (slice(0, 2), slice(2, 5), slice(5, 8)):
        out = policy_loss(name, logp[rows], old[rows], adv[rows], mask[rows])
        part = aggregate(out.per_token, mask[rows], mode, **counts)
        part.backward()
        total += part.detach()
    assert torch.allclose(total, full.detach(), rtol=1e-12, atol=1e-14)
    assert torch.allclose(logp.grad, full_grad, rtol=1e-12, atol=1e-14)


def test_recommended_aggregation_is_a_known_mode():
    for name in names():
        assert get_spec(name).aggregation in MODES
    assert get_spec("gspo").aggregation == "seq-mean-token-mean"


@pytest.mark.parametrize("name", PER_TOKEN_OBJECTIVES)
def test_metrics_combine_exactly_across_micro_batches_with_their_counts(name):
    logp, old, adv, mask = _batch(seed=4, b=10)
    old = old - 3.0 * (torch.arange(10) < 5)[:, None]  # rows 0-4 mostly tail, 5-9 not
    full = policy_loss(name, logp, old, adv, mask)
    parts = [policy_loss(name, logp[r], old[r], adv[r], mask[r])
             for r in (slice(0, 5), slice(5, 10))]
    for key, value in full.metrics.items():
        if key.endswith("_max"):
            combined = max(p.metrics[key] for p in parts)
        else:
            count = sum(p.metric_count(key) for p in parts)
            assert count == full.metric_count(key), key
            combined = sum(p.metrics[key] * p.metric_count(key) for p in parts) / max(count, 1)
        assert torch.allclose(torch.as_tensor(combined, dtype=value.dtype), value,
                              rtol=1e-9, atol=1e-12), key
