"""ASPO: Asymmetric Importance Sampling Policy Optimization (Archer2.0, arXiv 2510.06062).

Choices the paper leaves open (or fixes only in its code), written down here:
- Positive tokens use the flipped ratio r~ = pi_old * pi / sg(pi)^2, whose value is 1/r and
  whose gradient w.r.t. log pi is 1/r (so w = 1/r): rare-but-correct tokens whose
  probability fell get a larger update, over-amplified ones a smaller one.
- Positives are hard-clipped on r (not on 1/r): r > 1 + clip_high gives w = 0.
- Soft dual clip on positives: once 1/r exceeds dual_clip (r < 1/dual_clip) the weight
  stays at dual_clip (value clipped, gradient kept through log pi, CISPO-style).
- Negative tokens are exactly GRPO (docs/objectives.md), including its hard dual clip; the
  authors' code instead keeps a constant weight dual_clip past the dual clip.
- Archer's entropy-dependent clip (0.4 on the top-20% entropy tokens) needs entropies this
  signature does not take; a single clip_low / clip_high is used. Defaults: 0.2 / 0.2,
  dual clip 3.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.losses.clip import clip_regions, ppo_value
from maspo.losses.core import LossOutput, check_range, finalize, log_ratio, register, surrogate


@dataclass(frozen=True)
class AspoParams:
    clip_low: float = 0.2  # negatives: lower ratio bound 1 - clip_low
    clip_high: float = 0.2  # positives: upper ratio bound 1 + clip_high (on r)
    dual_clip: float = 3.0  # cap on positives' flipped weight 1/r; hard dual clip on negatives

    def __post_init__(self) -> None:
        check_range(self, "clip_low", 0.0, 0.999)
        check_range(self, "clip_high", 0.0)
        check_range(self, "dual_clip", 1.0, low_open=True)


@register("aspo", AspoParams)
def aspo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: AspoParams
         ) -> LossOutput:
    """Flipped importance ratio for positive-advantage tokens, GRPO for negatives (ASPO §3.2).

    A > 0: w = 1/r for 1/dual_clip <= r <= 1+clip_high, dual_clip below, 0 above;
    A < 0: w as GRPO.
    """
    ratio = torch.exp(log_ratio(logp, old_logp)).detach()  # (B, T)
    lo, hi = 1.0 - p.clip_low, 1.0 + p.clip_high
    pos_clip, neg_clip, dual = clip_regions(ratio, adv, lo, hi, p.dual_clip)
    flipped = (1.0 / ratio.clamp(max=hi)).clamp(max=p.dual_clip)  # value and weight, A > 0
    soft_dual = (adv > 0) & (ratio < 1.0 / p.dual_clip)
    zero = torch.zeros_like(ratio)
    neg_weight = torch.where(neg_clip | dual, zero, ratio)
    pos_weight = torch.where(pos_clip, zero, flipped)
    weight = torch.where(adv > 0, pos_weight, neg_weight)
    value = torch.where(adv > 0, -adv * flipped, ppo_value(ratio, adv, lo, hi, p.dual_clip))
    per_token = surrogate(value, -adv * weight, logp, mask)
    regions = {"clip": pos_clip | neg_clip | dual, "soft_dual": soft_dual}
    return finalize(per_token, weight, ratio, logp, old_logp, adv, mask, regions)
