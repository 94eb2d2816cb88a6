"""Group advantage estimators and advantage transforms.

Rewards are laid out group by group: ``rewards[g * G:(g + 1) * G]`` are the G completions
of prompt g (B = P * G). Every estimator returns one advantage per completion, (B,).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

STD_EPS = 1e-6  # GRPO's std guard: a group with tiny spread gets large but finite advantages


def _groups(rewards: Tensor, group_size: int) -> Tensor:
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be a flat tensor whose length is a multiple of "
                         f"group_size={group_size}, got shape {tuple(rewards.shape)}")
    return rewards.reshape(-1, group_size)  # (P, G)


def _flat_zero_when_tied(values: Tensor, grouped: Tensor) -> Tensor:
    """Zero the groups whose rewards are all equal (no learning signal), then flatten."""
    tied = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)  # (P, 1)
    return torch.where(tied, torch.zeros_like(values), values).reshape(-1)


def grpo(rewards: Tensor, group_size: int) -> Tensor:
    """GRPO (Shao et al. 2024, eq. 3): (R - group mean) / (unbiased group std + 1e-6)."""
    r = _groups(rewards, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True, unbiased=True) if group_size > 1 else torch.ones_like(r)
    return _flat_zero_when_tied(centred / (std + STD_EPS), r)


def dr_grpo(rewards: Tensor, group_size: int) -> Tensor:
    """Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): R - group mean, no std normalisation."""
    r = _groups(rewards, group_size)
    return _flat_zero_when_tied(r - r.mean(dim=1, keepdim=True), r)


def rloo(rewards: Tensor, group_size: int) -> Tensor:
    """RLOO (Ahmadian et al. 2024): R_i - mean of the other G - 1 rewards of its group."""
    r = _groups(rewards, group_size)
    if group_size == 1:
        return torch.zeros_like(rewards)
    loo_mean = (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)
    return _flat_zero_when_tied(r - loo_mean, r)


ESTIMATORS: dict[str, Callable[[Tensor, int], Tensor]] = {
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "rloo": rloo,
}


def estimate(name: str, rewards: Tensor, group_size: int) -> Tensor:
    """Advantages by estimator ``name`` (one of ``ESTIMATORS``)."""
    try:
        fn = ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown advantage estimator {name!r}; known: "
                         f"{', '.join(ESTIMATORS)}") from None
    return fn(rewards, group_size)


def entropy_advantage(advantages: Tensor, entropy: Tensor, mask: Tensor | None = None,
                      alpha: float = 0.4, kappa: float = 2.0) -> Tensor:
    """Entropy-shaped token advantages (Cheng et al., arXiv 2506.14758, eqs. 7-8).

    A'_t = A + min(alpha * sg(H_t), |A| / kappa). The bonus is never negative and never
    larger than |A| / kappa (kappa > 1), so it cannot flip the sign of A; it is zero where
    A == 0. advantages: (B,) or (B, T); entropy: (B, T) full-vocabulary entropy.
    Deviations from the paper: none.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if kappa <= 1:
        raise ValueError(f"kappa must be > 1, got {kappa}")
    adv = advantages[:, None].expand_as(entropy) if advantages.dim() == 1 else advantages
    bonus = torch.minimum(alpha * entropy.detach(), adv.abs() / kappa)
    shaped = adv + bonus
    if mask is not None:
        shaped = torch.where(mask.bool(), shaped, torch.zeros_like(shaped))
    return shaped
