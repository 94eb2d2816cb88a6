"""Policy objectives behind one API (the spec: docs/objectives.md).

    from maspo.losses import policy_loss, aggregate, names
    out = policy_loss("maspo", logp, old_logp, advantages, mask, alpha=0.3)
    loss = aggregate(out.per_token, mask, mode="token-mean")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Importing each family registers its objectives; the order here is the order of names().
# isort: off
from maspo.losses import maspo, dgpo, clip, soft, cispo, aspo, gspo  # noqa: F401
# isort: on
from maspo.losses.aggregate import MODES, aggregate
from maspo.losses.core import (
    LossOutput,
    ObjectiveSpec,
    compute_dtype,
    get_spec,
    make_params,
    names,
)
from maspo.losses.kl import k3_kl

__all__ = ["MODES", "LossOutput", "ObjectiveSpec", "aggregate", "compute_dtype", "get_spec",
           "k3_kl", "make_params", "names", "policy_loss"]


def policy_loss(name: str, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                **params: Any) -> LossOutput:
    """Per-token loss and detached metrics of objective ``name``.

    logp: (B, T) log pi_theta of the sampled tokens (carries the gradient).
    old_logp: (B, T) log pi_old of the same tokens (treated as a constant).
    advantages: (B,) one value per completion, or (B, T) per token. Objectives receive
    them as (B, 1) or (B, T) and broadcast.
    mask: (B, T) 1/True on completion tokens.
    params: the objective's parameters (see ``get_spec(name).params``); unknown ones are
    rejected by name.

    Precision: everything (ratio, gate, weight, per-token loss, metrics) is computed in
    ``compute_dtype`` of the inputs: their promoted dtype, at least float32. Engines pass
    bf16 ``logp`` beside fp32 ``old_logp`` (verl does); nothing is cast down to bf16.
    """
    spec = get_spec(name)
    cfg = make_params(name, params)
    if logp.dim() != 2:
        raise ValueError(f"logp must be (B, T), got shape {tuple(logp.shape)}")
    for arg, tensor in (("old_logp", old_logp), ("mask", mask)):
        if tensor.shape != logp.shape:
            raise ValueError(f"{arg} shape {tuple(tensor.shape)} != logp shape "
                             f"{tuple(logp.shape)}")
    dtype = compute_dtype(logp, old_logp, advantages)
    adv = advantages.detach().to(dtype)
    if adv.dim() == 1 and adv.shape[0] == logp.shape[0]:
        adv = adv[:, None]  # (B, 1): per-completion terms cost B, not B * T, operations
    elif adv.shape != logp.shape:
        raise ValueError(f"advantages must be (B,) or (B, T) matching logp {tuple(logp.shape)}, "
                         f"got {tuple(adv.shape)}")
    mask = mask.bool() if mask.dtype != torch.bool else mask
    # The cast of logp is differentiable: the gradient reaches logp in its own dtype.
    return spec.fn(logp.to(dtype), old_logp.detach().to(dtype), adv, mask, cfg)
