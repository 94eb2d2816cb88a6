"""DGPO: Decoupled Gradient Policy Optimization (arXiv 2603.14389).

Deviations from the paper: the paper defines DGPO through its gradient; the forward value
here is the integral of that gradient made continuous at both boundaries (so the logged
loss has no jumps). No dual clip. Log-ratios are clamped to +-20 (LOG_RATIO_CLAMP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.losses.core import LossOutput, check_range, finalize, log_ratio, register, surrogate


@dataclass(frozen=True)
class DgpoParams:
    n: float = 1.0  # polynomial decay order on low-ratio negatives: w ~ r**(n+1)
    m: float = 2.0  # sub-linear growth order on high-ratio positives: w ~ r**(1-1/m)
    clip_low: float = 0.2  # trust region lower edge 1 - clip_low
    clip_high: float = 0.2  # trust region upper edge 1 + clip_high

    def __post_init__(self) -> None:
        check_range(self, "n", 0.0)
        check_range(self, "m", 1.0)
        check_range(self, "clip_low", 0.0, 0.999)
        check_range(self, "clip_high", 0.0)


@register("dgpo", DgpoParams)
def dgpo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: DgpoParams
         ) -> LossOutput:
    """Continuous gradient decay outside the trust region instead of a zero gradient.

    DGPO: w = r^(n+1) / (1-clip_low)^n on (A < 0, r < 1-clip_low) (LN);
    w = (1+clip_high)^(1/m) * r^(1-1/m) on (A > 0, r > 1+clip_high) (HP); w = r elsewhere.
    """
    log_r = log_ratio(logp, old_logp).detach()  # (B, T)
    ratio = torch.exp(log_r)
    lo, hi = 1.0 - p.clip_low, 1.0 + p.clip_high
    low_neg = (adv < 0) & (ratio < lo)
    high_pos = (adv > 0) & (ratio > hi)

    # Each branch is evaluated with log r clamped into its own region, so the unused
    # branch never overflows.
    lr_ln = log_r.clamp(max=math.log(lo))
    w_ln = torch.exp((p.n + 1.0) * lr_ln - p.n * math.log(lo))
    v_ln = w_ln / (p.n + 1.0) + lo * p.n / (p.n + 1.0)  # = r at the boundary r = lo

    lr_hp = log_r.clamp(min=math.log(hi))
    w_hp = torch.exp(math.log(hi) / p.m + (1.0 - 1.0 / p.m) * lr_hp)
    if p.m == 1.0:  # w is the constant hi: the integral is logarithmic
        v_hp = hi * (1.0 + lr_hp - math.log(hi))
    else:
        k = 1.0 - 1.0 / p.m
        v_hp = w_hp / k - hi * (1.0 / p.m) / k  # = r at the boundary r = hi

    weight = torch.where(low_neg, w_ln, torch.where(high_pos, w_hp, ratio))
    unit_value = torch.where(low_neg, v_ln, torch.where(high_pos, v_hp, ratio))
    per_token = surrogate(-adv * unit_value, -adv * weight, logp, mask)
    return finalize(per_token, weight, ratio, logp, old_logp, adv, mask,
                    {"decay": low_neg | high_pos, "decay_neg": low_neg, "decay_pos": high_pos})
