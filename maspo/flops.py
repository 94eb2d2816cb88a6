"""Model FLOPs of a rollout's forward and backward passes, and the matmul throughput of the
machine on the model's own shapes: what model-FLOPs utilisation (MFU) is made of.

Counting (Kaplan et al. 2020, arXiv 2001.08361, Sec. 2.1; the MFU convention of PaLM,
arXiv 2204.02311, App. B): a token's forward costs 2 FLOPs per matmul weight it passes
(decoder linears; the lm_head where a next-token distribution is needed) plus attention,
4 x layers x A x keys, where A is the query width (heads x head dim) and keys the
positions it attends to (its own and the earlier ones, causal). The backward costs twice
the forward. Embedding lookups, norms, activations and the softmax are not counted.

Model FLOPs count the work the algorithm needs, not the work a program happens to do:
real tokens only (no padding), each distinct prompt once per group (maspo runs a prompt
once and its G completions on the shared cache, in sampling and in log-probs), the
lm_head only at the positions that predict a completion token, and the update only on
the rows it must compute (completions with advantage 0 give no loss or gradient when no
KL / entropy term is on). Recomputation (activation checkpointing), padding and prompts
run twice are overhead, which the utilisation then shows.

Deviations: the first completion token's lm_head row is counted per completion (the
sampler computes it once per prompt, G rows sharing it); the count assumes full
fine-tuning (with LoRA the frozen weights need no weight gradient, so the backward is
nearer one forward than two).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from maspo.logprobs import decoder_and_head
from maspo.rollout.engine import Rollout

BACKWARD_FACTOR = 2  # a backward pass costs twice its forward (weight and input gradients)
PEAK_TOKENS = 1024  # rows of the matmuls that measure the sustained (large-batch) throughput
MEASURE_SECONDS = 0.5  # wall time each throughput measurement runs for, after a warm-up


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs to know of a causal LM."""

    layers: int  # L decoder layers
    attention_width: int  # A = query heads x head dim
    decoder_params: int  # matmul weights of the decoder (every nn.Linear in it)
    head_params: int  # lm_head weights (H x V)
    linears: tuple[tuple[int, int, int], ...]  # (in, out, count) of each linear shape

    @classmethod
    def of(cls, model: nn.Module) -> ModelShape:
        """Read from the model itself: its nn.Linear weights and its config's attention."""
        decoder, head = decoder_and_head(model)
        config = model.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        shapes: Counter[tuple[int, int]] = Counter()
        for module in decoder.modules():
            if isinstance(module, nn.Linear):
                shapes[(module.in_features, module.out_features)] += 1
            elif not isinstance(module, nn.Embedding) and any(
                    p.dim() == 2 for p in module.parameters(recurse=False)):
                raise NotImplementedError(f"cannot count the FLOPs of {type(module).__name__}: "
                                          "only nn.Linear matmul layers are known")
        if not isinstance(head, nn.Linear):
            raise NotImplementedError(f"cannot count the FLOPs of a {type(head).__name__} head")
        shapes[(head.in_features, head.out_features)] += 1
        head_params = head.in_features * head.out_features
        total = sum(i * o * n for (i, o), n in shapes.items())
        return cls(layers=config.num_hidden_layers, attention_width=heads * head_dim,
                   decoder_params=total - head_params, head_params=head_params,
                   linears=tuple((i, o, n) for (i, o), n in shapes.items()))


def decoder_flops(shape: ModelShape, start: int, end: int) -> int:
    """Forward FLOPs of the decoder on positions ``start`` .. ``end - 1`` of one sequence,
    the positions before ``start`` already in its key/value cache."""
    tokens = max(end - start, 0)
    keys = (start + 1 + end) * tokens // 2  # sum over p of the p + 1 positions attended
    return 2 * shape.decoder_params * tokens + 4 * shape.layers * shape.attention_width * keys


def head_flops(shape: ModelShape, tokens: int) -> int:
    """Forward FLOPs of the lm_head at ``tokens`` positions."""
    return 2 * shape.head_params * tokens


def forward_flops(shape: ModelShape, prompt_lengths: list[int], completion_lengths: list[int],
                  prompt_index: list[int]) -> int:
    """Forward model FLOPs that give every completion token its next-token distribution.

    Each distinct prompt u (``prompt_lengths[u]`` real tokens) runs once; completion i
    (``completion_lengths[i]`` = n tokens, on prompt ``prompt_index[i]``) runs its first
    n - 1 tokens on top of its prompt's cache, and the lm_head runs at the n positions
    that predict its tokens (the prompt's last one and those n - 1).
    """
    total = sum(decoder_flops(shape, 0, s) for s in prompt_lengths)
    for n, u in zip(completion_lengths, prompt_index, strict=True):
        if n:
            s = prompt_lengths[u]
            total += decoder_flops(shape, s, s + n - 1) + head_flops(shape, n)
    return total


def rollout_flops(shape: ModelShape, rollout: Rollout, rows: Tensor | None = None) -> int:
    """``forward_flops`` of the completions ``rows`` of a rollout (default: all), each
    prompt among them counted once."""
    g = rollout.group_size
    rows = torch.arange(len(rollout.texts)) if rows is None else rows.cpu()
    groups = torch.div(rows, g, rounding_mode="floor")  # (b,) prompt of each row
    unique, index = torch.unique(groups, return_inverse=True)  # (u,), (b,)
    prompt_lengths = rollout.attention_mask[:, :rollout.prompt_len].sum(-1).cpu()  # (B,)
    completion_lengths = rollout.completion_mask.sum(-1).cpu()  # (B,)
    return forward_flops(shape, prompt_lengths[unique * g].tolist(),
                         completion_lengths[rows].tolist(), index.tolist())


def update_flops(shape: ModelShape, rollout: Rollout, rows: Tensor) -> int:
    """Forward and backward model FLOPs of the update rows ``rows`` (once each)."""
    return (1 + BACKWARD_FACTOR) * rollout_flops(shape, rollout, rows)


# ---------------------------------------------------------------------------------------
# What the machine does on those shapes.


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_throughput(shape: ModelShape, dtype: torch.dtype, device: torch.device | str,
                      tokens: int = PEAK_TOKENS, seconds: float = MEASURE_SECONDS) -> float:
    """Sustained FLOP/s of the model's linear shapes on ``tokens`` rows in ``dtype``,
    measured now on ``device`` with torch's threads.

    One pass multiplies ``tokens`` rows by as many distinct weights of each shape as a
    forward meets (so weights come from memory, not cache, as in the model).
    """
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(0)
    weights = [torch.randn(o, i, generator=gen, device=device).to(dtype)
               for i, o, n in shape.linears for _ in range(n)]  # (out, in) as nn.Linear
    inputs = {i: torch.randn(tokens, i, generator=gen, device=device).to(dtype)
              for i, _, _ in shape.linears}  # (tokens, in)
    flops = sum(2 * tokens * w.shape[0] * w.shape[1] for w in weights)

    def one_pass() -> None:
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape[1]], w)

    with torch.no_grad():
        one_pass()  # warm-up: kernel selection, allocator
        _sync(device)
        passes, start = 0, time.perf_counter()
        while passes == 0 or time.perf_counter() - start < seconds:
            one_pass()
            _sync(device)
            passes += 1
    return flops * passes / (time.perf_counter() - start)
