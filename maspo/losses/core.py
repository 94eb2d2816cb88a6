"""Registry, shared tensor helpers and the metrics every objective reports.

Every objective is a pure function ``fn(logp, old_logp, advantages, mask, params)`` that
returns a ``LossOutput``. Objectives describe themselves by their per-token gradient
weight ``w`` (``d loss_t / d logp_t = -A_t * w_t``, see docs/objectives.md); ``surrogate``
turns a forward value and a weight into a tensor with exactly that value and gradient.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# bf16 keeps 8 significant bits: ratios within ~0.4% of 1 round to 1 and the gates and
# clips act on rounding noise; objectives compute in at least this dtype.
MIN_COMPUTE_DTYPE = torch.float32
LOG_RATIO_CLAMP = 20.0  # exp(20) ~ 5e8 keeps ratios (and their squares) finite in fp32
TAIL_PROB = 0.1  # old probability below this: a "tail" token in the metrics
HEAD_PROB = 0.9  # old probability at or above this: a "head" token in the metrics
LOG_TAIL, LOG_HEAD = math.log(TAIL_PROB), math.log(HEAD_PROB)
# Weight-profile groups as lists of the categories (3 * sign + bucket) used in finalize.
_PROFILE_GROUPS = {
    "pos": [6, 7, 8], "neg": [0, 1, 2], "tail": [0, 3, 6], "head": [2, 5, 8],
    "tail_pos": [6], "tail_neg": [0], "head_pos": [8], "head_neg": [2],
}


@dataclass(frozen=True)
class LossOutput:
    """What ``policy_loss`` returns.

    per_token: (B, T) loss to minimise, 0 where mask == 0, differentiable w.r.t. logp.
    metrics: detached scalar tensors (fractions are over masked tokens).
    weight: (B, T) detached gradient weight w (0 where mask == 0), for diagnostics.
    counts: for each metric that is a mean, the number of tokens it is a mean over (a
    group with no token reports 0 with count 0). Metrics ending in "_max" are maxima.
    """

    per_token: Tensor
    metrics: dict[str, Tensor]
    weight: Tensor
    counts: dict[str, Tensor] = dataclasses.field(default_factory=dict)

    def metric_count(self, key: str) -> Tensor | None:
        """How many tokens metric ``key`` averages over (to combine micro-batches exactly:
        sum value * count over micro-batches, divide by the summed count). None: unknown."""
        return self.counts.get(key)


ObjectiveFn = Callable[[Tensor, Tensor, Tensor, Tensor, Any], LossOutput]


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered objective: its function, parameter dataclass and recommended aggregation."""

    name: str
    fn: ObjectiveFn
    params: type
    aggregation: str
    summary: str


_REGISTRY: dict[str, ObjectiveSpec] = {}


def register(name: str, params: type, aggregation: str = "token-mean"):
    """Decorator adding an objective to the registry under ``name``."""

    def wrap(fn: ObjectiveFn) -> ObjectiveFn:
        if name in _REGISTRY:
            raise ValueError(f"objective {name!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ObjectiveSpec(name, fn, params, aggregation, doc[0] if doc else "")
        return fn

    return wrap


def unregister(name: str) -> None:
    """Remove objective ``name`` (for objectives registered temporarily, e.g. in tests)."""
    get_spec(name)
    del _REGISTRY[name]


def names() -> list[str]:
    """Registered objective names, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ObjectiveSpec:
    """The registered objective ``name``; unknown names list the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; known objectives: {', '.join(_REGISTRY)}"
        ) from None


def make_params(name: str, overrides: Mapping[str, Any]) -> Any:
    """Build objective ``name``'s frozen parameter dataclass, rejecting unknown keys by name."""
    spec = get_spec(name)
    allowed = {f.name for f in dataclasses.fields(spec.params)}
    for key in overrides:
        if key not in allowed:
            raise ValueError(
                f"unknown parameter {key!r} for objective {name!r}; "
                f"its parameters are: {', '.join(sorted(allowed)) or '(none)'}"
            )
    return spec.params(**overrides)


# ---------------------------------------------------------------------------------------
# Validation helpers for the parameter dataclasses (called from __post_init__).


def check_range(obj: Any, field: str, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, optional: bool = False) -> None:
    """Raise ValueError naming ``field`` unless its value is a finite number within bounds."""
    value = getattr(obj, field)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"parameter {field!r} must be a number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        op = ">" if low_open else ">="
        raise ValueError(f"parameter {field!r} must be {op} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"parameter {field!r} must be <= {high}, got {value!r}")
    if abs(value) == float("inf"):
        raise ValueError(f"parameter {field!r} must be finite, got {value!r}")


def check_bool(obj: Any, field: str) -> None:
    value = getattr(obj, field)
    if not isinstance(value, bool):
        raise ValueError(f"parameter {field!r} must be true or false, got {value!r}")


# ---------------------------------------------------------------------------------------
# Tensor helpers shared by the objectives.


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype objectives compute in: the promoted floating dtype of ``tensors``, at least
    float32 (MIN_COMPUTE_DTYPE). Non-floating tensors (integer advantages) do not count."""
    dtype = MIN_COMPUTE_DTYPE
    for tensor in tensors:
        if tensor.is_floating_point():
            dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def log_ratio(logp: Tensor, old_logp: Tensor) -> Tensor:
    """``clamp(logp - old, -20, 20)``; the clamp keeps ``exp`` finite (LOG_RATIO_CLAMP)."""
    return torch.clamp(logp - old_logp, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def surrogate(value: Tensor, coef: Tensor, logp: Tensor, mask: Tensor) -> Tensor:
    """Per-token loss whose forward value is ``value`` and whose gradient is ``coef``.

    Objectives pass ``coef = -A * w``. ``value`` and ``coef`` are constants (stop-gradient);
    the only path to ``logp`` is the zero-valued term ``logp - sg(logp)``, so the gradient
    is exact at region boundaries (no ties in min/max) and finite for any finite weight.
    """
    zero = logp - logp.detach()
    return torch.where(mask, torch.addcmul(value.detach(), coef.detach(), zero), 0.0)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over ``mask``; 0 when the mask is empty."""
    x = torch.where(mask, x, torch.zeros_like(x))
    return x.sum() / mask.sum().clamp(min=1)


def finalize(
    per_token: Tensor,
    weight: Tensor,
    ratio: Tensor,
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    regions: Mapping[str, Tensor],
    extra: Mapping[str, Tensor] | None = None,
    extra_counts: Mapping[str, Tensor] | None = None,
) -> LossOutput:
    """Package the loss with the metrics docs/objectives.md asks every call to report.

    regions: name -> (B, T) bool of tokens in a special region (clipped / gated / decayed);
    reported as ``<name>_frac`` over masked tokens. extra: objective-specific metrics,
    averaged over ``extra_counts[key]`` tokens (default: all masked tokens).
    """
    with torch.no_grad():
        weight = torch.where(mask, weight.detach(), torch.zeros_like(weight))
        n = mask.sum().clamp(min=1).to(weight.dtype)
        # One pass for the whole weight profile: each masked token gets a category
        # 3 * sign(A) + bucket(q) in 0..8 (sign: 0 neg, 1 zero, 2 pos; bucket: 0 tail,
        # 1 middle, 2 head); unmasked tokens get 9. bincount then gives every group's sum.
        sign = (adv > 0).to(torch.int64) - (adv < 0).to(torch.int64) + 1
        bucket = (old_logp >= LOG_TAIL).to(torch.int64) + (old_logp >= LOG_HEAD).to(torch.int64)
        cat = torch.where(mask, 3 * sign + bucket, torch.full_like(sign, 9)).reshape(-1)
        sums = torch.bincount(cat, weights=weight.reshape(-1), minlength=10)[:9]
        counts = torch.bincount(cat, minlength=10)[:9].to(sums.dtype)
        metrics: dict[str, Tensor] = {}
        for region, where in regions.items():
            metrics[f"{region}_frac"] = (where & mask).sum().to(weight.dtype) / n
        metrics["w_mean"] = sums.sum() / n
        group_counts: dict[str, Tensor] = {}
        for label, cats in _PROFILE_GROUPS.items():
            group_counts[f"w_mean_{label}"] = counts[cats].sum()
            metrics[f"w_mean_{label}"] = (sums[cats].sum()
                                          / group_counts[f"w_mean_{label}"].clamp(min=1)
                                          ).to(weight.dtype)
        metrics["grad_util"] = (mask & (adv != 0) & (weight != 0)).sum().to(weight.dtype) / n
        ratio = ratio.detach()
        metrics["ratio_mean"] = torch.where(mask, ratio, 0.0).sum() / n
        metrics["ratio_max"] = torch.where(mask, ratio, 0.0).max()
        metrics["approx_kl"] = torch.where(mask, old_logp.detach() - logp.detach(), 0.0).sum() / n
        if extra:
            metrics.update({k: v.detach() for k, v in extra.items()})
        all_tokens = mask.sum()
        counts_out = {k: group_counts.get(k, all_tokens) for k in metrics
                      if not k.endswith("_max")}
        counts_out.update(extra_counts or {})
    return LossOutput(per_token=per_token, metrics=metrics, weight=weight, counts=counts_out)
