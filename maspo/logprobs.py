"""Per-token log-probabilities (and entropy) of completions, without full-vocabulary logits.

The naive way, `log_softmax(model(x).logits)`, holds a (B, L, V) fp32 logits tensor, a
second one for log_softmax and a third for its gradient: with V = 49152 and 4096 tokens
that is 0.8 GB each. Instead we run the decoder once for hidden states, keep only the
positions that predict real completion tokens, and apply the lm_head chunk by chunk,
reducing each (chunk, V) block to a log-prob and an entropy before the next. Each chunk
runs under activation checkpointing, so backward recomputes one block at a time too.

Completions of a batch differ in length. When padding every row to the longest would
waste many positions, the completion pass runs in length segments (``length_segments``):
rows that are done leave between segments, as they leave the sampler's batch.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

from maspo.precision import bf16_units

CPU_CHUNK_ELEMENTS = 1 << 22
"""Logits per chunk on CPU (16 MiB fp32; 85 tokens at V = 49152). Small blocks stay under
glibc's 32 MiB mmap ceiling, so freed blocks are reused rather than page-faulted in anew;
on CPU this was as fast as 256-4096-token chunks or faster (bench/logprobs.py)."""

MIN_SEGMENT_SAVING = 256
"""Padded positions a length-segmented completion pass must save to be used: each segment
is one more decoder call (launches, a cache reorder) and, in an update, one more
weight-gradient matmul and accumulation per weight, which a few positions do not repay
(small batches, e.g. the tests' tiny runs, stay one pass)."""

MIN_SEGMENT_SAVING_AUTOCAST = 1024
"""The same under autocast where bf16 matmuls are much faster than fp32 ones (AMX on a CPU,
tensor cores on a GPU): a saved position is cheaper there (about 4x on an AMX CPU) while a
segment's cost stays. Measured on a CPU with AMX, the default model, 8 x 8 completions of
up to 64 tokens, 2 updates (old log-probs and updates, one thread): at bf16 14.0 CPU-s
with this threshold, 17.0 with 256, 13.6-13.9 never segmenting; at fp32 18.1 with 256
against 22.5 never segmenting. On a CPU whose bf16 units are AVX512-BF16 only (bf16
matmuls 2.2x fp32's), autocast keeps ``MIN_SEGMENT_SAVING``: on an AMD EPYC (Zen 4) the
same workload's old log-probs and updates took 22.3-22.6 s with 256 against 28.8-29.9 s
with 1024 (``bench/trainer.py --no-trl --tokens 64 --precisions bf16``, alternated)."""

ACCELERATOR_CHUNK_ELEMENTS = 1 << 26
"""Logits per chunk on a GPU (256 MiB fp32): few kernel launches, still small next to a full
(B, T, V) tensor. A reasoned default, not yet tuned by measurement on a GPU."""


class TokenStats(NamedTuple):
    """Per-completion-token statistics; zero wherever the completion is padding."""

    logprobs: torch.Tensor
    """(B, T) log pi(y_t | x, y_<t) of the realised tokens, at the given temperature."""
    entropy: torch.Tensor | None
    """(B, T) entropy of the full next-token distribution, or None if not requested."""


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_start: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int | None = None,
) -> TokenStats:
    """Log-probs of the completion tokens under `model`, differentiable in its parameters.

    `input_ids` is prompts (left-padded to a common length `completion_start`) followed
    by completions (right-padded); `attention_mask` is 0 on every pad. The returned
    (B, T) tensors cover `input_ids[:, completion_start:]`, with T = L - completion_start.
    Logits are divided by `temperature` first, matching the sampler's distribution.
    `chunk_size` is the number of tokens per lm_head block (default: see
    `default_chunk_size`); it changes memory and speed, not results.
    Position ids count real tokens only, as `generate` does, so left padding does not
    shift positions. Works for any causal LM whose logits are `lm_head(decoder(x))`
    (also through a `peft` wrapper); models with a final logit transform are refused.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    batch, length = input_ids.shape  # (B, L)
    if not 1 <= completion_start < length:
        raise ValueError(f"completion_start {completion_start} must be in [1, {length})")
    decoder, lm_head = decoder_and_head(model)

    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, L)
    hidden = decoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    ).last_hidden_state  # (B, L, H)

    # Position t predicts token t + 1: completion token j comes from hidden state j - 1.
    targets = input_ids[:, completion_start:]  # (B, T)
    valid = attention_mask[:, completion_start:].bool()  # (B, T)
    states = hidden[:, completion_start - 1 : length - 1]  # (B, T, H)
    return _head_stats(lm_head, states, targets, valid, temperature, with_entropy, chunk_size)


def shared_prompt_logprobs(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    prompt_index: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int | None = None,
) -> TokenStats:
    """`token_logprobs` for completions that share prompts, running each prompt once.

    GRPO-style batches hold G completions per prompt, and a prompt is often far longer
    than its completions: the U distinct prompts `(U, S)` (left-padded) go through the
    decoder once, their key/value cache is gathered to the B completions by
    `prompt_index` `(B,)`, and only the completions `(B, T)` (right-padded, 0 in
    `completion_mask` on pads) are run on top of it. Gradients flow back through the
    shared cache into the prompt computation, so values and gradients equal
    `token_logprobs` on the concatenated rows (up to float rounding).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    decoder, lm_head = decoder_and_head(model)
    cache, cache_arg = new_cache(model, decoder)
    prompt_pos = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)  # (U, S)
    prefix = decoder(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_pos,
                     use_cache=True, **cache_arg)
    full_mask = torch.cat([prompt_mask[prompt_index], completion_mask], dim=1)  # (B, S + T)
    start = prompt_mask.sum(-1)[prompt_index, None]  # (B, 1) real prompt tokens
    completion_pos = start + torch.arange(completion_ids.shape[1], device=start.device)
    # completion token 0 is predicted by the prompt's last position, token j by hidden j-1:
    # row i needs the decoder at its first n_i - 1 positions only
    segments = length_segments((completion_mask.sum(-1) - 1).clamp(min=0).tolist(),
                               segment_saving(completion_ids.device))
    if segments is None:  # one pass over every row and column
        cache.reorder_cache(prompt_index)  # (U, ...) -> (B, ...): each completion's prompt
        hidden = decoder(input_ids=completion_ids, attention_mask=full_mask,
                         position_ids=completion_pos, use_cache=True,
                         **cache_arg).last_hidden_state[:, :-1]  # (B, T - 1, H)
    else:
        hidden = _segmented(decoder, cache, cache_arg, segments, prompt_index, completion_ids,
                            full_mask, completion_pos, prompt_ids.shape[1])  # (B, T - 1, H)
    states = torch.cat([prefix.last_hidden_state[prompt_index, -1:], hidden], dim=1)
    return _head_stats(lm_head, states, completion_ids, completion_mask.bool(), temperature,
                       with_entropy, chunk_size)


def segment_saving(device: torch.device) -> int:
    """The padded positions a segmented pass must save on ``device`` now: more under
    autocast (``MIN_SEGMENT_SAVING_AUTOCAST``) than without (``MIN_SEGMENT_SAVING``),
    except on a CPU without AMX, whose bf16 matmuls gain too little for it."""
    if not torch.is_autocast_enabled(device.type):
        return MIN_SEGMENT_SAVING
    if device.type == "cpu" and not cpu_has_amx():
        return MIN_SEGMENT_SAVING
    return MIN_SEGMENT_SAVING_AUTOCAST


@functools.cache
def cpu_has_amx() -> bool:
    """Whether this machine's CPU multiplies bf16 on AMX units (read once a process)."""
    return bf16_units("cpu").native


def length_segments(needed: list[int], min_saving: int = MIN_SEGMENT_SAVING
                    ) -> list[tuple[int, int, list[int]]] | None:
    """Column ranges [a, b) of a completion pass and the rows still running in each, or
    None when one pass over every row and column is as good.

    ``needed[i]`` is how many leading positions row i needs. A segment runs until half
    of its rows are done, so no segment computes much more than twice the positions its
    rows need; rows leave between segments, as in the sampler. Splitting pays only when
    it saves ``min_saving`` padded positions or more.
    """
    width, segments, a = max(needed, default=0), [], 0
    alive = [i for i, n in enumerate(needed) if n > a]
    while alive:
        ends = sorted({needed[i] for i in alive})
        b = next((e for e in ends if 2 * sum(needed[i] > e for i in alive) <= len(alive)),
                 ends[-1])
        segments.append((a, b, alive))
        a, alive = b, [i for i in alive if needed[i] > b]
    work = sum((b - a) * len(rows) for a, b, rows in segments)
    if len(segments) < 2 or len(needed) * (width + 1) - work < min_saving:
        return None
    return segments


def _segmented(decoder: nn.Module, cache: DynamicCache, cache_arg: dict[str, Any],
               segments: list[tuple[int, int, list[int]]], prompt_index: torch.Tensor,
               completion_ids: torch.Tensor, full_mask: torch.Tensor,
               completion_pos: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """The completion pass segment by segment (``length_segments``): hidden states
    (B, T - 1, H) of the positions that predict a next completion token, zero elsewhere."""
    parts, previous = [], None
    for a, b, rows in segments:
        index = torch.tensor(rows, device=completion_ids.device)  # (b_k,) ascending
        if previous is None:
            cache.reorder_cache(prompt_index[index])  # (U, ...) -> (b_k, ...)
        else:  # the rows that go on, among the previous segment's
            cache.reorder_cache(torch.searchsorted(previous, index))
        parts.append((index, a, b, decoder(
            input_ids=completion_ids[index, a:b], attention_mask=full_mask[index, :prompt_len + b],
            position_ids=completion_pos[index, a:b], use_cache=True,
            **cache_arg).last_hidden_state))  # (b_k, b - a, H)
        previous = index
    width = completion_ids.shape[1] - 1
    hidden = parts[0][3].new_zeros(completion_ids.shape[0], width, parts[0][3].shape[-1])
    for index, a, b, part in parts:
        columns = torch.arange(a, b, device=index.device)
        hidden = hidden.index_put((index[:, None], columns[None, :]), part)
    return hidden  # (B, T - 1, H)


def _head_stats(
    lm_head: nn.Module,
    states: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    temperature: float,
    with_entropy: bool,
    chunk_size: int | None,
) -> TokenStats:
    """Chunked lm_head over the `valid` positions of `states` `(B, T, H)` -> (B, T) stats."""
    flat_states = states[valid]  # (N, H), N real tokens
    picked = targets[valid]  # (N,)
    if chunk_size is None:
        chunk_size = default_chunk_size(lm_head, flat_states.device)
    logp_parts: list[torch.Tensor] = []
    ent_parts: list[torch.Tensor] = []
    for start in range(0, flat_states.shape[0], chunk_size):
        args = (flat_states[start : start + chunk_size], picked[start : start + chunk_size])
        if torch.is_grad_enabled():
            logp, ent = checkpoint(
                _chunk_stats, lm_head, *args, temperature, with_entropy, use_reentrant=False
            )
        else:
            logp, ent = _chunk_stats(lm_head, *args, temperature, with_entropy)
        logp_parts.append(logp)
        ent_parts.append(ent)

    def scatter(parts: list[torch.Tensor]) -> torch.Tensor:
        """Place the N real-token values back into a zero-padded (B, T) grid."""
        flat = torch.cat(parts) if parts else states.new_zeros(0, dtype=torch.float32)
        grid = torch.zeros(valid.shape, dtype=flat.dtype, device=flat.device)
        return grid.masked_scatter(valid, flat)  # (B, T)

    return TokenStats(scatter(logp_parts), scatter(ent_parts) if with_entropy else None)


def default_chunk_size(lm_head: nn.Module, device: torch.device) -> int:
    """Tokens per chunk so that one (C, V) fp32 block holds about the budgeted elements."""
    vocab = lm_head.weight.shape[0]
    budget = CPU_CHUNK_ELEMENTS if device.type == "cpu" else ACCELERATOR_CHUNK_ELEMENTS
    return max(1, budget // vocab)


def _chunk_stats(
    lm_head: nn.Module,
    states: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of `targets` and entropy for one chunk of hidden states `(C, H)`."""
    logits = lm_head(states).float()  # (C, V), fp32 whatever the model dtype
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)  # (C, V)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (C,)
    if not with_entropy:
        return logp, logp.new_zeros(0)
    entropy = -(logp_all.exp() * logp_all).sum(-1)  # (C,)
    return logp, entropy


def new_cache(model: nn.Module, decoder: nn.Module) -> tuple[DynamicCache, dict[str, Any]]:
    """An empty key/value cache for `decoder`, and the keyword that passes it in.

    We create the cache and keep our own handle on it (the decoder fills it in place), so
    no output field is read: transformers < 5.24 names the argument (and the output field)
    `past_key_values`; 5.24 renames both to `cache` and warns on the old name until 5.40,
    which removes it. The name is read from the decoder's signature.
    """
    cache = DynamicCache(config=model.config)
    params = inspect.signature(decoder.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return cache, {name: cache}
    raise NotImplementedError(f"{type(decoder).__name__}.forward takes no key/value cache")


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The hidden-state trunk and the output projection of a (possibly peft) causal LM."""
    config = getattr(model, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        raise NotImplementedError(
            f"token_logprobs does not support {type(model).__name__}: it transforms logits"
        )
    decoder = model.get_decoder()
    lm_head = model.get_output_embeddings()
    if decoder is None or lm_head is None or decoder is model:
        raise NotImplementedError(f"cannot split {type(model).__name__} into decoder and lm_head")
    return decoder, lm_head
