"""The k3 estimator of KL(pi_theta || pi_ref) per token (Schulman 2020), clamped as verl's
``low_var_kl`` is, so that one extreme token cannot make the loss non-finite (which would
skip the whole update).

Deviations from the plain estimator: the log-ratio is clamped to +-KL_LOG_RATIO_CLAMP and the
per-token value to at most KL_MAX; a token past either bound gets no KL gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maspo.losses.core import compute_dtype

KL_LOG_RATIO_CLAMP = 20.0  # exp(20) ~ 5e8: finite in float32 (verl's low_var_kl bound)
KL_MAX = 10.0  # per-token cap: a token the policy has left behind adds at most this (verl's)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """(B, T) k3 = exp(d) - d - 1 with d = ref_logp - logp (>= 0), differentiable w.r.t. logp.

    Computed in ``compute_dtype(logp, ref_logp)`` (at least float32); masking and reduction
    are the caller's (``aggregate``).
    """
    dtype = compute_dtype(logp, ref_logp)
    delta = (ref_logp.detach().to(dtype) - logp.to(dtype)).clamp(-KL_LOG_RATIO_CLAMP,
                                                                  KL_LOG_RATIO_CLAMP)
    return (torch.exp(delta) - delta - 1.0).clamp(max=KL_MAX)
