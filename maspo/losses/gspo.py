"""GSPO: Group Sequence Policy Optimization (arXiv 2507.18071), token form (GSPO-token).

Deviations from the paper: none; the sequence log-ratio is clamped to +-20 before exp.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.losses.clip import clip_regions, ppo_value
from maspo.losses.core import (
    LossOutput,
    check_range,
    finalize,
    log_ratio,
    masked_mean,
    register,
    surrogate,
)


@dataclass(frozen=True)
class GspoParams:
    clip_low: float = 3e-4  # sequence-ratio lower bound 1 - clip_low
    clip_high: float = 4e-4  # sequence-ratio upper bound 1 + clip_high

    def __post_init__(self) -> None:
        check_range(self, "clip_low", 0.0, 0.999)
        check_range(self, "clip_high", 0.0)


@register("gspo", GspoParams, aggregation="seq-mean-token-mean")
def gspo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: GspoParams
         ) -> LossOutput:
    """PPO clip on the length-normalised sequence ratio (GSPO eq. 7, token form eq. 13).

    s_i = exp(masked mean over completion i of (logp - old)); s_it = sg(s_i) * pi / sg(pi),
    so w = s_i inside [1-clip_low, 1+clip_high] (by advantage sign) and 0 when clipped.
    """
    token_lr = log_ratio(logp, old_logp).detach()  # (B, T)
    maskf = mask.to(logp.dtype)
    seq_lr = (token_lr * maskf).sum(-1) / maskf.sum(-1).clamp(min=1)  # (B,)
    seq_ratio = torch.exp(log_ratio(seq_lr, torch.zeros_like(seq_lr)))[:, None].expand_as(logp)
    lo, hi = 1.0 - p.clip_low, 1.0 + p.clip_high
    pos_clip, neg_clip, _ = clip_regions(seq_ratio, adv, lo, hi, None)
    clipped = pos_clip | neg_clip
    weight = torch.where(clipped, torch.zeros_like(seq_ratio), seq_ratio)
    per_token = surrogate(ppo_value(seq_ratio, adv, lo, hi, None), -adv * weight, logp,
                          mask)
    has_tokens = mask.any(-1)  # (B,)
    extra = {"seq_ratio_mean": masked_mean(seq_ratio[:, 0], has_tokens)}
    return finalize(per_token, weight, torch.exp(token_lr), logp, old_logp, adv, mask,
                    {"clip": clipped}, extra, {"seq_ratio_mean": has_tokens.sum()})
