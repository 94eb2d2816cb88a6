"""Reduction of per-token losses to a scalar (kept apart from the surrogates, as in verl).

Each mode divides by a count that the caller may pass for the whole mini-batch (or the
whole data-parallel batch): summing ``aggregate`` over micro-batches that were given the
global counts then equals ``aggregate`` over the full batch, in value and gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def _count(value: int | float | Tensor | None, default: Tensor, name: str) -> Tensor | float:
    if value is None:
        return default.clamp(min=1)
    if isinstance(value, Tensor):
        return value.clamp(min=1)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    *,
    num_tokens: int | Tensor | None = None,
    num_seqs: int | Tensor | None = None,
    norm_len: int | None = None,
) -> Tensor:
    """Reduce a (B, T) per-token loss to a scalar.

    token-mean: sum over masked tokens / num_tokens (default: this batch's token count).
    seq-mean-token-mean: sum over completions of (their token sum / their length) / num_seqs.
    seq-mean-token-sum: sum over completions of their token sum / num_seqs.
    seq-mean-token-sum-norm (Dr. GRPO): total sum / (num_seqs * norm_len), norm_len default T.
    num_seqs defaults to the number of completions with at least one token. An empty mask
    gives 0 (all denominators are at least 1).
    """
    if mode not in MODES:
        raise ValueError(f"unknown aggregation mode {mode!r}; known modes: {', '.join(MODES)}")
    if per_token.shape != mask.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != per_token shape "
                         f"{tuple(per_token.shape)}")
    maskf = mask.to(per_token.dtype)
    per_token = torch.where(mask.bool(), per_token, torch.zeros_like(per_token))
    if mode == "token-mean":
        return per_token.sum() / _count(num_tokens, maskf.sum(), "num_tokens")
    lengths = maskf.sum(-1)  # (B,)
    seqs = _count(num_seqs, (lengths > 0).to(per_token.dtype).sum(), "num_seqs")
    seq_sums = per_token.sum(-1)  # (B,)
    if mode == "seq-mean-token-mean":
        return (seq_sums / lengths.clamp(min=1)).sum() / seqs
    if mode == "seq-mean-token-sum":
        return seq_sums.sum() / seqs
    length = per_token.shape[-1] if norm_len is None else norm_len
    if length <= 0:
        raise ValueError(f"norm_len must be positive, got {norm_len!r}")
    return seq_sums.sum() / (seqs * length)
