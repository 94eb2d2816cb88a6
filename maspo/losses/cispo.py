"""CISPO: clipped importance-sampling-weight policy optimization (MiniMax-M1, arXiv 2506.13585).

Deviations from the paper: none; the clipped ratio is a stop-gradient weight on log pi,
so every token keeps a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.losses.core import LossOutput, check_range, finalize, log_ratio, register, surrogate


@dataclass(frozen=True)
class CispoParams:
    clip_low: float | None = None  # lower weight bound 1 - clip_low; None: no lower bound
    clip_high: float = 0.2  # upper weight bound 1 + clip_high

    def __post_init__(self) -> None:
        check_range(self, "clip_low", 0.0, 1.0, optional=True)
        check_range(self, "clip_high", 0.0)


@register("cispo", CispoParams)
def cispo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: CispoParams
          ) -> LossOutput:
    """REINFORCE with a clipped, stop-gradient IS weight (CISPO eq. 4).

    loss = -A * sg(clip(r, 1-clip_low, 1+clip_high)) * logp; w = clip(r, ...).
    """
    ratio = torch.exp(log_ratio(logp, old_logp)).detach()  # (B, T)
    low = None if p.clip_low is None else 1.0 - p.clip_low
    weight = ratio.clamp(min=low, max=1.0 + p.clip_high)
    coef = -adv * weight
    per_token = surrogate(coef * logp.detach(), coef, logp, mask)
    return finalize(per_token, weight, ratio, logp, old_logp, adv, mask,
                    {"clip": weight != ratio})
