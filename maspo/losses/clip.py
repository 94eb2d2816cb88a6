"""The PPO-clip family: GRPO, Clip-Higher (DAPO), DAC, BAPO, GPPO and CE-GPPO.

All six share one forward value, the PPO clipped surrogate with an optional dual clip,
and differ in their ratio bounds (fixed, per token, per call) and in the gradient weight
they leave on clipped tokens (zero, or a constant for the gradient-preserving variants).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.losses.core import (
    LossOutput,
    check_range,
    finalize,
    log_ratio,
    masked_mean,
    register,
    surrogate,
)


def clip_regions(ratio: Tensor, adv: Tensor, lo: Tensor | float, hi: Tensor | float,
                 dual_clip: float | None) -> tuple[Tensor, Tensor, Tensor]:
    """Masks of clipped tokens: (A > 0, r > hi), (A < 0, r < lo), (A < 0, r > dual_clip)."""
    pos_clip = (adv > 0) & (ratio > hi)
    neg_clip = (adv < 0) & (ratio < lo)
    if dual_clip is None:
        dual = torch.zeros_like(pos_clip)
    else:
        dual = (adv < 0) & (ratio > dual_clip)
    return pos_clip, neg_clip, dual


def ppo_value(ratio: Tensor, adv: Tensor, lo: Tensor | float, hi: Tensor | float,
              dual_clip: float | None) -> Tensor:
    """PPO clipped surrogate -min(r A, clip(r, lo, hi) A), dual-clipped at -dual_clip * A.

    For A > 0 this is -A * min(r, hi); for A < 0 it is |A| * min(max(r, lo), dual_clip).
    """
    pos = ratio.clamp(max=hi) if not isinstance(hi, Tensor) else torch.minimum(ratio, hi)
    neg = ratio.clamp(min=lo) if not isinstance(lo, Tensor) else torch.maximum(ratio, lo)
    if dual_clip is not None:
        neg = neg.clamp(max=dual_clip)
    return -adv * torch.where(adv > 0, pos, neg)


def _clipped(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor,
             lo: Tensor | float, hi: Tensor | float, dual_clip: float | None,
             pos_weight: Tensor | float = 0.0, neg_weight: Tensor | float = 0.0,
             extra: dict[str, Tensor] | None = None) -> LossOutput:
    """Shared body: PPO value; w = r inside, pos_weight / neg_weight on clipped, 0 past dual."""
    ratio = torch.exp(log_ratio(logp, old_logp)).detach()  # (B, T)
    pos_clip, neg_clip, dual = clip_regions(ratio, adv, lo, hi, dual_clip)
    zero = torch.zeros_like(ratio)
    weight = torch.where(pos_clip, zero + pos_weight,
                         torch.where(neg_clip, zero + neg_weight, ratio))
    weight = torch.where(dual, zero, weight)
    per_token = surrogate(ppo_value(ratio, adv, lo, hi, dual_clip), -adv * weight, logp,
                          mask)
    regions = {"clip": pos_clip | neg_clip | dual, "clip_pos": pos_clip,
               "clip_neg": neg_clip, "dual_clip": dual}
    return finalize(per_token, weight, ratio, logp, old_logp, adv, mask, regions, extra)


def _check_clip(params) -> None:
    check_range(params, "clip_low", 0.0, 0.999)
    check_range(params, "clip_high", 0.0)
    check_range(params, "dual_clip", 1.0, low_open=True, optional=True)


@dataclass(frozen=True)
class GrpoParams:
    clip_low: float = 0.2  # lower ratio bound 1 - clip_low (negatives)
    clip_high: float = 0.2  # upper ratio bound 1 + clip_high (positives)
    dual_clip: float | None = 3.0  # negatives with r above this get no gradient; None disables

    def __post_init__(self) -> None:
        _check_clip(self)


@register("grpo", GrpoParams)
def grpo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: GrpoParams
         ) -> LossOutput:
    """PPO/GRPO clipped surrogate with dual clip (Shao et al. 2024; Ye et al. 2020).

    w = r inside [1-clip_low, 1+clip_high] (by advantage sign), 0 when clipped or past
    the dual clip. Deviations from the paper: none (the KL term is the trainer's).
    """
    return _clipped(logp, old_logp, adv, mask, 1.0 - p.clip_low, 1.0 + p.clip_high, p.dual_clip)


@dataclass(frozen=True)
class ClipHigherParams:
    clip_low: float = 0.2  # lower ratio bound 1 - clip_low (negatives)
    clip_high: float = 0.28  # DAPO's decoupled, larger upper bound
    dual_clip: float | None = 3.0  # None disables

    def __post_init__(self) -> None:
        _check_clip(self)


@register("clip_higher", ClipHigherParams)
def clip_higher(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor,
                p: ClipHigherParams) -> LossOutput:
    """DAPO Clip-Higher: GRPO with a decoupled, larger upper bound (arXiv 2503.14476, eq. 10).

    Deviations from the paper: none (token-level aggregation is chosen by the caller).
    """
    return _clipped(logp, old_logp, adv, mask, 1.0 - p.clip_low, 1.0 + p.clip_high, p.dual_clip)


@dataclass(frozen=True)
class DacParams:
    clip_low: float = 0.2  # eps_low in the probability-dependent lower bound
    clip_high: float = 0.28  # eps_high in the probability-dependent upper bound
    high_cap: float = 10.0  # cap on the upper bound for very rare tokens
    dual_clip: float | None = 3.0  # None disables

    def __post_init__(self) -> None:
        _check_clip(self)
        check_range(self, "high_cap", 1.0)


def dac_bounds(old_logp: Tensor, clip_low: float, clip_high: float, high_cap: float
               ) -> tuple[Tensor, Tensor]:
    """DCPO's per-token ratio bounds as functions of the old probability q.

    low(q) = 0.5 + 0.5 sqrt(max(1 - 4 eps_low / q, 0));
    high(q) = min(0.5 + 0.5 sqrt(1 + 4 eps_high / q), high_cap).
    1/q = exp(-old) is inf for q below ~1e-38; the max/min above map that to 0.5 / high_cap.
    """
    inv_q = torch.exp(-old_logp)
    lo = 0.5 + 0.5 * torch.sqrt((1.0 - 4.0 * clip_low * inv_q).clamp(min=0.0))
    hi = (0.5 + 0.5 * torch.sqrt(1.0 + 4.0 * clip_high * inv_q)).clamp(max=high_cap)
    return lo, hi


@register("dac", DacParams)
def dac(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: DacParams
        ) -> LossOutput:
    """Dynamic adaptive clipping: bounds widen for low-probability tokens (DCPO, arXiv 2509.02333).

    GRPO's weight with the per-token bounds of ``dac_bounds``. Deviations from the paper:
    the upper bound is capped at high_cap and a dual clip is applied to negatives.
    """
    lo, hi = dac_bounds(old_logp, p.clip_low, p.clip_high, p.high_cap)
    extra = {"bound_low_mean": masked_mean(lo, mask), "bound_high_mean": masked_mean(hi, mask)}
    return _clipped(logp, old_logp, adv, mask, lo, hi, p.dual_clip, extra=extra)


@dataclass(frozen=True)
class BapoParams:
    target: float = 0.5  # rho_0: the positive share of the policy gradient to reach
    c_low_min: float = 0.6  # lower ratio bound search range
    c_low_max: float = 0.9
    c_high_min: float = 1.2  # upper ratio bound search range
    c_high_max: float = 3.0
    step: float = 0.05  # bound increment per search step
    dual_clip: float | None = 3.0  # None disables

    def __post_init__(self) -> None:
        check_range(self, "target", 0.0, 1.0)
        check_range(self, "c_low_min", 0.0, 1.0, low_open=True)
        check_range(self, "c_low_max", self.c_low_min, 1.0)
        check_range(self, "c_high_min", 1.0)
        check_range(self, "c_high_max", self.c_high_min)
        check_range(self, "step", 0.0, low_open=True)
        check_range(self, "dual_clip", 1.0, low_open=True, optional=True)


def bapo_bounds(ratio: Tensor, adv: Tensor, mask: Tensor, p: BapoParams
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Search (c_low, c_high) as in BAPO's Algorithm 1; returns them and the positive share.

    Candidates, in order: c_low rises from c_low_min to c_low_max in ``step``s with c_high
    at c_high_min, then c_high rises to c_high_max with c_low at its maximum (the order of
    the authors' release). rho = P / (P + N) with P = sum of A * r over positive tokens
    that keep their gradient (r <= c_high) and N = sum of |A| * r over negative tokens
    that keep it (c_low <= r <= dual_clip): the share of the policy-gradient mass carried
    by positives, which rises monotonically along the candidates. The first candidate with
    rho >= target is chosen, else the last. All candidates are evaluated with tensor ops
    (no host sync).
    """
    n_low = round((p.c_low_max - p.c_low_min) / p.step)
    n_high = round((p.c_high_max - p.c_high_min) / p.step)
    k_low = torch.arange(n_low + 1, device=ratio.device, dtype=ratio.dtype)
    k_high = torch.arange(1, n_high + 1, device=ratio.device, dtype=ratio.dtype)
    c_low = torch.cat([(p.c_low_min + k_low * p.step).clamp(max=p.c_low_max),
                       torch.full_like(k_high, p.c_low_max)])  # (K,)
    c_high = torch.cat([torch.full_like(k_low, p.c_high_min),
                        (p.c_high_min + k_high * p.step).clamp(max=p.c_high_max)])  # (K,)
    # Gradient mass of positives below each c_high and of negatives above each c_low, for
    # every grid value at once: bucket each token against the (sorted) grid, sum per
    # bucket, then cumulate. O(N log K) time and O(N) memory, no (K, N) tensor.
    contrib = torch.where(mask, adv.abs() * ratio, 0.0).reshape(-1)  # (B*T,)
    r = ratio.reshape(-1)
    is_pos = (mask & (adv > 0)).reshape(-1)
    is_neg = (mask & (adv < 0)).reshape(-1)
    if p.dual_clip is not None:
        is_neg = is_neg & (r <= p.dual_clip)
    high_grid = c_high[len(k_low) - 1:].contiguous()  # distinct c_high values, ascending
    low_grid = c_low[:len(k_low)].contiguous()  # distinct c_low values, ascending
    # bucket i of r: high_grid[i-1] < r <= high_grid[i]; r <= high_grid[j] iff i <= j
    pos_bins = torch.bucketize(r, high_grid)
    pos_mass = torch.zeros(len(high_grid) + 1, dtype=ratio.dtype, device=ratio.device)
    pos_mass.index_add_(0, pos_bins, torch.where(is_pos, contrib, 0.0))
    pos_upto = pos_mass.cumsum(0)[:-1]  # (len(high_grid),) mass with r <= c_high
    # bucket i of r: low_grid[i-1] <= r < low_grid[i]; r >= low_grid[j] iff i >= j + 1
    neg_bins = torch.bucketize(r, low_grid, right=True)
    neg_mass = torch.zeros(len(low_grid) + 1, dtype=ratio.dtype, device=ratio.device)
    neg_mass.index_add_(0, neg_bins, torch.where(is_neg, contrib, 0.0))
    neg_from = neg_mass.flip(0).cumsum(0).flip(0)[1:]  # (len(low_grid),) mass with r >= c_low
    # candidate k uses c_low index min(k, n_low) and c_high index max(k - n_low, 0)
    k = torch.arange(len(c_low), device=ratio.device)
    pos_sum = pos_upto[(k - n_low).clamp(min=0)]  # (K,)
    neg_sum = neg_from[k.clamp(max=n_low)]
    share = pos_sum / (pos_sum + neg_sum).clamp(min=torch.finfo(ratio.dtype).tiny)
    reached = share >= p.target
    last = torch.tensor(len(c_low) - 1, device=ratio.device)
    first = torch.where(reached.any(), reached.to(torch.int64).argmax(), last)
    return c_low[first], c_high[first], share[first]


@register("bapo", BapoParams)
def bapo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: BapoParams
         ) -> LossOutput:
    """Balanced policy optimization with adaptive clipping (BAPO, arXiv 2510.18927, Alg. 1).

    GRPO's weight with bounds [c_low, c_high] re-chosen on every call so that positive
    tokens carry at least ``target`` of the policy-gradient mass (``bapo_bounds``).
    Deviations from the paper: rho counts gradient mass (clipped tokens carry none), which
    is what raising the bounds changes; bounds are chosen per ``policy_loss`` call (per
    micro-batch if the caller splits); negatives past ``dual_clip`` are dropped, as in the
    authors' release.
    """
    ratio = torch.exp(log_ratio(logp, old_logp)).detach()
    c_low, c_high, share = bapo_bounds(ratio, adv, mask, p)
    extra = {"bound_low": c_low, "bound_high": c_high, "pos_share": share}
    return _clipped(logp, old_logp, adv, mask, c_low, c_high, p.dual_clip, extra=extra)


@dataclass(frozen=True)
class GppoParams:
    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float | None = 10.0  # None disables

    def __post_init__(self) -> None:
        _check_clip(self)


@register("gppo", GppoParams)
def gppo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: GppoParams
         ) -> LossOutput:
    """Gradient-preserving clipping: clipped tokens keep a bounded gradient (arXiv 2508.07629).

    Forward value as GRPO; w = 1+clip_high on (A > 0, r > 1+clip_high), 1-clip_low on
    (A < 0, r < 1-clip_low), 0 past the dual clip, r elsewhere. Deviations: none.
    """
    lo, hi = 1.0 - p.clip_low, 1.0 + p.clip_high
    return _clipped(logp, old_logp, adv, mask, lo, hi, p.dual_clip, pos_weight=hi, neg_weight=lo)


@dataclass(frozen=True)
class CeGppoParams:
    clip_low: float = 0.2
    clip_high: float = 0.2
    beta_low: float = 0.5  # scales the gradient kept on clipped low-ratio negatives
    beta_high: float = 1.0  # scales the gradient kept on clipped high-ratio positives
    dual_clip: float | None = 10.0  # None disables

    def __post_init__(self) -> None:
        _check_clip(self)
        check_range(self, "beta_low", 0.0)
        check_range(self, "beta_high", 0.0)


@register("ce_gppo", CeGppoParams)
def ce_gppo(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, p: CeGppoParams
            ) -> LossOutput:
    """CE-GPPO: GPPO with scaled gradients on clipped tokens to steer entropy (arXiv 2509.20712).

    w = beta_high * (1+clip_high) on clipped positives, beta_low * (1-clip_low) on clipped
    negatives, otherwise as GPPO. Deviations from the paper: none.
    """
    lo, hi = 1.0 - p.clip_low, 1.0 + p.clip_high
    return _clipped(logp, old_logp, adv, mask, lo, hi, p.dual_clip,
                    pos_weight=p.beta_high * hi, neg_weight=p.beta_low * lo)

