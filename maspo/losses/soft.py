"""SAPO: Soft Adaptive Policy Optimization (arXiv 2511.20347).

Deviations from the paper: none in the weight; log-ratios are clamped to +-20.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.losses.core import LossOutput, check_range, finalize, log_ratio, register, surrogate

SOFT_GATE_HALF = 0.5  # a token counts as "gated" once its soft gate 4s(1-s) is below this


@dataclass(frozen=True)
class SapoParams:
    tau_pos: float = 1.0  # gate temperature for positive advantages
    tau_neg: float = 1.05  # gate temperature for negative advantages (slightly sharper)

    def __post_init__(self) -> None:
        check_range(self, "tau_pos", 0.0, low_open=True)
        check_range(self, "tau_neg", 0.0, low_open=True)


@register("sapo", SapoParams)
def sapo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: SapoParams
         ) -> LossOutput:
    """Sigmoid soft gate on the ratio in place of a hard clip (SAPO eq. for f_tau).

    loss = -A * (4/tau) * sigmoid(tau (r - 1)); w = r * 4 s (1 - s), s = sigmoid(tau (r - 1)),
    tau = tau_pos if A > 0 else tau_neg.
    """
    ratio = torch.exp(log_ratio(logp, old_logp)).detach()  # (B, T)
    tau = torch.where(adv > 0, torch.full_like(ratio, p.tau_pos), torch.full_like(ratio, p.tau_neg))
    x = tau * (ratio - 1.0)
    # s (1 - s) as sigmoid(x) * sigmoid(-x): exact in both tails, no 1 - 1 cancellation.
    gate = 4.0 * torch.sigmoid(x) * torch.sigmoid(-x)
    weight = ratio * gate
    value = -adv * (4.0 / tau) * torch.sigmoid(x)
    per_token = surrogate(value, -adv * weight, logp, mask)
    return finalize(per_token, weight, ratio, logp, old_logp, adv, mask,
                    {"gate": gate < SOFT_GATE_HALF})
