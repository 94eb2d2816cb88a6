"""MASPO: Mass-Adaptive Soft Policy Optimization (arXiv 2602.17550).

Deviations from the paper: none in the weight. The gate is a stop-gradient factor, as in
the authors' released code; log-ratios are clamped to +-20 (LOG_RATIO_CLAMP) and the
mass term is computed in log space so old probabilities down to ~1e-38 stay finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.losses.core import (
    LossOutput,
    check_bool,
    check_range,
    finalize,
    log_ratio,
    masked_mean,
    register,
    surrogate,
)


@dataclass(frozen=True)
class MaspoParams:
    sigma_base: float = 1.0  # gate width for a token of old probability 1 (mass limiter floor)
    alpha: float = 0.3  # mass exponent: width = sigma_base / q**alpha (wider for rare tokens)
    beta_pos: float = 0.03  # risk controller slope for verified positives: 1 + beta_pos * A
    beta_neg: float = 0.03  # risk controller slope for negatives: 1 / (1 - beta_neg * A)
    sigma_high: float = 10.0  # cap on the mass-adaptive width
    adv_low: float = 0.1  # lower clamp of each risk factor
    adv_high: float = 10.0  # upper clamp of each risk factor
    mass_adaptive: bool = True  # ablation switch: off -> width = sigma_base for every token
    risk_control: bool = True  # ablation switch: off -> both risk factors = 1

    def __post_init__(self) -> None:
        check_range(self, "sigma_base", 0.0, low_open=True)
        check_range(self, "alpha", 0.0)
        check_range(self, "beta_pos", 0.0)
        check_range(self, "beta_neg", 0.0)
        check_range(self, "sigma_high", self.sigma_base)
        check_range(self, "adv_low", 0.0, low_open=True)
        check_range(self, "adv_high", self.adv_low)
        check_bool(self, "mass_adaptive")
        check_bool(self, "risk_control")


def log_gate_width(old_logp: Tensor, adv: Tensor, p: MaspoParams) -> Tensor:
    """log sigma per token, sigma = mass(q) * risk(A) (MASPO Sec. 3.2-3.3).

    mass = clamp(sigma_base / q**alpha, sigma_base, sigma_high) is computed as
    log sigma_base - alpha * log q: q**alpha underflows for q ~ 1e-30 in fp32, this does not.
    """
    if p.mass_adaptive and p.alpha > 0:
        # the clamp of sigma_base / q**alpha to [sigma_base, sigma_high] is a clamp of log q
        # to [-log(sigma_high / sigma_base) / alpha, 0]: one clamp and one fused add
        low = -math.log(p.sigma_high / p.sigma_base) / p.alpha
        log_sigma = torch.add(math.log(p.sigma_base), old_logp.clamp(low, 0.0), alpha=-p.alpha)
    else:
        log_sigma = torch.full_like(old_logp, math.log(p.sigma_base))
    if not p.risk_control:
        return log_sigma
    risk_pos = (1.0 + p.beta_pos * adv).clamp(p.adv_low, p.adv_high)
    # A is clamped to <= 0 before the division: positive A never uses risk_neg, and
    # clamping keeps 1 - beta_neg * A >= 1 so the division is always safe.
    risk_neg = (1.0 / (1.0 - p.beta_neg * adv.clamp(max=0.0))).clamp(p.adv_low, p.adv_high)
    return log_sigma.add_(torch.where(adv > 0, risk_pos, risk_neg).log())


@register("maspo", MaspoParams)
def maspo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: MaspoParams
          ) -> LossOutput:
    """Soft Gaussian trust-region gate with mass-adaptive width and asymmetric risk control.

    MASPO eq. (gate): w = F * r with F = exp(-(r - 1)^2 / (2 sigma^2)) on tokens pushed in
    the aggressive direction ((A > 0, r > 1) or (A < 0, r < 1)), F = 1 elsewhere;
    loss_t = -A * sg(F) * r. No hard clip and no dual clip.
    """
    ratio = torch.exp(log_ratio(logp, old_logp)).detach()  # (B, T)
    shift = ratio - 1.0
    gated = (adv * shift) > 0  # (A > 0, r > 1) or (A < 0, r < 1)
    sigma = log_gate_width(old_logp, adv, p).exp_()
    # F = exp(-(r - 1)^2 / (2 sigma^2)) = exp(-0.5 ((r - 1) / sigma)^2)
    gate = torch.where(gated, shift.div_(sigma).square_().mul_(-0.5).exp_(), 1.0)
    weight = gate * ratio
    coef = -adv * weight
    per_token = surrogate(coef, coef, logp, mask)
    gated_tokens = mask & gated
    extra = {
        "gate_mean": masked_mean(gate, gated_tokens),
        "sigma_mean": masked_mean(sigma, mask),
    }
    return finalize(per_token, weight, ratio, logp, old_logp, adv, mask,
                    {"gate": gated}, extra, {"gate_mean": gated_tokens.sum()})
