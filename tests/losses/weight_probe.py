"""Gradient-weight probe shared by the objective tests (a plain module, not a conftest)."""

from __future__ import annotations

import math

import torch

from maspo.losses import policy_loss


def grad_weights(name: str, ratio, adv, old_prob=1.0, **params) -> torch.Tensor:
    """Gradient weight w = -(d loss / d logp) / A for each (ratio, adv, old_prob) token.

    Inputs broadcast to one row of tokens (B = 1) in float64; the loss is summed so each
    token's gradient is its own -A * w.
    """
    ratio, adv, old_prob = torch.broadcast_tensors(
        torch.as_tensor(ratio, dtype=torch.float64),
        torch.as_tensor(adv, dtype=torch.float64),
        torch.as_tensor(old_prob, dtype=torch.float64))
    old = torch.log(old_prob).reshape(1, -1)
    logp = (old + torch.log(ratio).reshape(1, -1)).clone().requires_grad_(True)
    a = adv.reshape(1, -1)
    out = policy_loss(name, logp, old, a, torch.ones_like(logp, dtype=torch.bool), **params)
    out.per_token.sum().backward()
    return (-logp.grad / a).reshape(-1)


def close(actual, expected, rel=1e-9) -> bool:
    return all(math.isclose(float(x), float(y), rel_tol=rel, abs_tol=1e-12)
               for x, y in zip(actual, expected, strict=True))
