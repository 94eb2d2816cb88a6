"""Prefix-shared sampling in process (CPU or GPU): each distinct prompt is encoded once.

Each distinct prompt runs through the decoder once; its key/value cache is then copied to
its G rows (the cache is expanded, not the prompt) and the rows decode together. A run of
leading tokens every prompt of the call shares (the chat template's system turn) is
encoded once for all of them (``encode_prompts``), and a long prompt pass on a CPU runs
a few prompts a call (``PROMPT_PASS_ROWS``). Rows that reach a stop token leave the
batch (their cache rows are dropped), so the batch shrinks as completions finish instead
of decoding padding to the longest one (once enough have finished to repay the copy of
the cache: ``STOPPED_ROW_STEPS``). The cache
(``maspo.rollout.kv_cache``) is preallocated and written in place, and under bf16
autocast it holds the bf16 keys and values a decode step's attention reads: no copy of
the cache per step, no cast of it per step. The vocabulary-sized work (log-softmax, the
draw) runs once per step on the live rows only, the first step's once per distinct prompt.

Tokens are drawn from exactly the distribution the trainer scores: softmax(logits / T) in
fp32 from the same decoder / lm_head split as ``maspo.logprobs`` (optionally truncated to
the top_p nucleus and renormalised, for evaluation). This is a short loop of our own
rather than HF ``generate``: ``generate`` fills every field we leave unset from the
model's ``generation_config.json`` (repetition_penalty, top_k, no_repeat_ngram_size,
min_p, ...) and would sample from a distribution nobody scores, it has no way to start
from one prompt's cache for G rows, and it keeps decoding rows that have finished. Here
no logits processor exists to be switched on: only the model's EOS ids are read.

Randomness: every group (the n rows of one listed prompt) draws its uniforms from its
own generator, seeded from (the caller's seed, the group's position) or given by the
caller one per group, and row j uses its own uniform at each token position. A group's
completions therefore depend on its prompt, the policy and that seed only, never on the
other groups of the batch or on how long their completions run: two policies sampling the
same prompts with the same seed share their noise (common random numbers), and a step
sampled again after a resume is bit-identical on CPU. The global RNG is not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from maspo.config import CALL_POSITIONS
from maspo.logprobs import decoder_and_head
from maspo.rollout.engine import Rollout, SamplingSettings
from maspo.rollout.kv_cache import PreallocatedLayer, join_rows, sampling_cache, split_rows
from maspo.seeds import derive_seed

MIN_PREFIX_SAVING = 128
"""Prompt positions that encoding a shared leading run once must save (``encode_prompts``;
the run's columns for every prompt, less a whole prompt for each padding width): it costs
one more decoder call and a copy of the keys and values, which a few positions do not
repay (the tests' tiny runs, 2-6 prompts, encode their prompts whole). The default
model's chat template shares 27 of the study's 51 prompt tokens: 8 prompts of one length
save 165 positions, a 128-prompt evaluation batch 3,405."""


SAME_BITS_ROWS = 16
"""From 16 rows up a CPU matmul on one thread rounds each row the same whatever rows share
it (MKL's sgemm takes other kernels for 1 row and for 2-15 on the Intel CPU measured,
for 1-3 rows on an AMD EPYC (Zen 4); checked at the default model's shapes; on more
threads the split of the rows between them changes it too). A
call of 16 rows or more keeps every matmul there: the first token's lm_head runs on at
least 16 rows (the distinct prompts, zero rows added), and stopped rows leave the decode
batch only while 16 stay. So at fp32 on a CPU thread (the study's setting) a group's
completions and log-probs do not depend on the groups it is sampled with, and dynamic
sampling can sample
several draws in one call (``maspo.rollout.groups``) with the same result. That holds for
prompts of 16 tokens or more (a chat template's alone are longer), whose passes
(``encode_prompts``) then run 16 rows or more, and of one length: another length changes
the left padding the attention sums over."""


PROMPT_PASS_ROWS = 1024
"""Positions (prompts x columns) a decoder call of the prompt pass computes, about, on a CPU
at fp32: a longer pass runs in calls of whole prompts, as many as make about this many
positions (``pass_bounds``), whose activations stay in the CPU's caches. The study's
held-out set (256 prompts of 51 tokens, 24 columns each after the shared run) took
15.7-16.1 CPU-s in 6 calls of 1,008-1,032 positions against 17.9-18.4 in one call of
6,144, and 64 prompts of 199 tokens 33.8-35.8 against 38.5-38.8 (an AMD EPYC, Zen 4,
one thread, alternated). Every call keeps 16 rows or more (``SAME_BITS_ROWS``), so at
fp32 on one thread each prompt's values are the same bits either way. Not under autocast
(whose bf16 kernels were not checked for that) nor on a GPU (where one large call is
faster)."""


STOPPED_ROW_STEPS = 8
"""Rows that stopped stay in the decode batch (computed, their tokens ignored) until,
kept to the end, they would cost 1/8 of a whole batch's step or more (stopped rows x
steps left >= rows / 8); then they leave. Leaving copies the whole cache (about a tenth of
a decode step for the default model at 64 rows), while a stopped row costs 1/b of a step
per step, so rows that stop near the end are not worth a copy. A row's values do not
depend on the rows beside it, so the completions are the same either way."""


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every token that ends a completion: the generation config's EOS ids and the tokenizer's."""
    config = getattr(model, "generation_config", None)
    ids = config.eos_token_id if config is not None else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def next_token_logprobs(logits: Tensor, settings: SamplingSettings) -> Tensor:
    """(b, V) log-probabilities of the sampling distribution, from fp32 logits (b, V).

    softmax(logits / T), computed as ``maspo.logprobs`` scores it; with top_p < 1, the
    smallest set of most likely tokens whose mass reaches top_p, renormalised.
    """
    if settings.greedy:
        return torch.log_softmax(logits, dim=-1)
    if settings.temperature != 1.0:
        logits = logits / settings.temperature
    logp = torch.log_softmax(logits, dim=-1)  # (b, V)
    if settings.top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)
        mass_before = sorted_logp.exp().cumsum(-1) - sorted_logp.exp()  # (b, V)
        drop_sorted = mass_before >= settings.top_p  # the top token is always kept
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logp = torch.log_softmax(logp.masked_fill(drop, -torch.inf), dim=-1)
    return logp


def draw(logp: Tensor, settings: SamplingSettings, uniform: Tensor) -> Tensor:
    """(b,) token ids drawn from the (b, V) log-probabilities (argmax when greedy), with
    the (b,) fp64 uniforms ``uniform``.

    Inverse CDF: one uniform per row against the fp64 running sum of the probabilities.
    It draws from the same categorical as ``torch.multinomial``, which instead draws an
    exponential variate for every vocabulary entry (a quarter of the decode step's time
    on CPU at V = 49152). The running sum is scaled by its total, so the fp32 rounding of
    the normalisation does not bias the draw; zero-probability tokens are never drawn.
    """
    if settings.greedy:
        return logp.argmax(-1)
    cdf = logp.exp().double().cumsum(-1)  # (b, V)
    u = uniform.to(cdf.dtype)[:, None]  # (b, 1)
    token = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)  # (b, 1): first cdf > u
    return token.squeeze(-1).clamp(max=cdf.shape[1] - 1)


def shared_prefix_length(prompt_ids: Tensor, prompt_mask: Tensor) -> int:
    """How many leading tokens all the left-padded prompts ``(U, S)`` share, short of the
    shortest prompt's last token (each prompt keeps one token of its own to run)."""
    lengths = prompt_mask.sum(-1).tolist()  # (U,)
    width = prompt_ids.shape[1]
    rows = [prompt_ids[u, width - n:].tolist() for u, n in enumerate(lengths)]
    shared = 0
    for column in zip(*rows, strict=False):  # up to the shortest prompt
        if column.count(column[0]) != len(column):
            break
        shared += 1
    return max(0, min(shared, min(lengths, default=1) - 1))


def encode_prompts(decoder: nn.Module, cache: DynamicCache, cache_arg: dict[str, Any],
                   prompt_ids: Tensor, prompt_mask: Tensor) -> Tensor:
    """Run the U distinct left-padded prompts ``(U, S)`` into the empty ``cache``; return
    each prompt's last hidden state ``(U, H)``.

    When the prompts share a leading run of tokens (a chat template's system turn, a
    few-shot preamble) long enough to save ``MIN_PREFIX_SAVING`` positions, the columns
    before the run's end are computed for one prompt of each padding width only (the
    prompt whole, its cache then cut there), copied to the others, and every prompt's
    remaining columns run on top. The cache then holds what the whole batch would have
    put there, and the remaining columns attend to the same keys in the same places, so
    the values are the same bit for bit where the attention kernel gives a query row the
    same bits whichever rows share its call (torch's CPU kernel on the Intel CPUs measured;
    a test checks it where it holds), and the same up to float rounding elsewhere (an AMD
    CPU, where that kernel's bits depend on how the query rows fall into its blocks; a
    GPU, whose kernels may be picked by shape); otherwise the prompts run whole. Either
    pass runs in calls of some prompts each when it is long (``prompt_pass``). The
    shared run is not used where it would not be exact: a cache that keeps the
    keys rounded to bf16 under autocast (the prompts' own attention reads them unrounded)
    or one with sliding-window layers (which cannot be cut).
    """
    count, width = prompt_ids.shape
    positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)  # (U, S)
    pads = width - prompt_mask.sum(-1)  # (U,) each prompt's left padding
    kinds, kind = torch.unique(pads, return_inverse=True)  # padding widths, each prompt's
    cached = int(pads.min()) + shared_prefix_length(prompt_ids, prompt_mask)  # columns
    exact = all(type(layer) is DynamicLayer or (type(layer) is PreallocatedLayer
                                                and layer.store_dtype is None)
                for layer in cache.layers)  # (the docstring's last sentence)
    if (not exact or count * cached - len(kinds) * width < MIN_PREFIX_SAVING
            or count * (width - cached) < SAME_BITS_ROWS):  # (SAME_BITS_ROWS)
        return prompt_pass(decoder, cache, cache_arg, prompt_ids, prompt_mask, positions, 0)
    first = torch.stack([torch.nonzero(kind == k)[0, 0] for k in range(len(kinds))])  # (W,)
    decoder(input_ids=prompt_ids[first], attention_mask=prompt_mask[first],
            position_ids=positions[first], use_cache=True, **cache_arg)  # (W, S) whole
    cache.crop(cached)  # the columns every prompt of a padding width shares
    cache.reorder_cache(kind)  # (W, ...) -> (U, ...)
    return prompt_pass(decoder, cache, cache_arg, prompt_ids, prompt_mask, positions, cached)


def pass_bounds(count: int, columns: int, device: torch.device) -> list[tuple[int, int]]:
    """The prompts [a, b) each decoder call of a prompt pass over ``count`` prompts of
    ``columns`` columns runs (``PROMPT_PASS_ROWS``): one call unless the pass is on a CPU
    at fp32, longer than ``PROMPT_PASS_ROWS`` and splits into calls of ``SAME_BITS_ROWS``
    rows or more; else calls of whole prompts, as even as can be."""
    calls = min(-(-count * columns // PROMPT_PASS_ROWS),
                count // -(-SAME_BITS_ROWS // max(columns, 1)))  # (SAME_BITS_ROWS)
    if device.type != "cpu" or torch.is_autocast_enabled("cpu") or calls < 2:
        return [(0, count)]
    ends = [round(count * (c + 1) / calls) for c in range(calls)]
    return list(zip([0, *ends[:-1]], ends, strict=True))


def prompt_pass(decoder: nn.Module, cache: DynamicCache, cache_arg: dict[str, Any],
                prompt_ids: Tensor, prompt_mask: Tensor, positions: Tensor,
                start: int) -> Tensor:
    """The decoder over columns ``start`` on of the prompts ``(U, S)``, whose first
    ``start`` columns ``cache`` holds, into ``cache``; each prompt's last hidden state
    ``(U, H)``. A long pass on a CPU runs in calls of some prompts each (``pass_bounds``),
    each into its own rows of the cache."""
    bounds = pass_bounds(len(prompt_ids), prompt_ids.shape[1] - start, prompt_ids.device)
    parts = split_rows(cache, bounds) if len(bounds) > 1 else None
    if parts is None:
        parts, bounds = [cache], [(0, len(prompt_ids))]
    hidden = [decoder(input_ids=prompt_ids[a:b, start:], attention_mask=prompt_mask[a:b],
                      position_ids=positions[a:b, start:], use_cache=True,
                      **dict.fromkeys(cache_arg, part)).last_hidden_state[:, -1]
              for (a, b), part in zip(bounds, parts, strict=True)]  # (b - a, H) each
    if len(parts) > 1:
        join_rows(cache, parts)
    return torch.cat(hidden) if len(hidden) > 1 else hidden[0]  # (U, H)


@torch.no_grad()
def sample_tokens(model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, index: Tensor,
                  settings: SamplingSettings, stop_ids: list[int], pad_id: int,
                  noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Decode one completion per entry of ``index`` (B,), which names its prompt among the
    U distinct prompts ``(U, S)`` (left-padded); each prompt is run once. Row i draws its
    token at position t with the uniform ``noise[i, t]`` (B, max_new_tokens).

    Returns (tokens, logprobs, mask), each (B, T') with T' <= max_new_tokens the longest
    completion; ``mask`` is True up to and including a row's stop token, and tokens are
    ``pad_id`` after it.
    """
    decoder, lm_head = decoder_and_head(model)
    batch, steps = index.shape[0], settings.max_new_tokens
    cache, cache_arg = sampling_cache(model, decoder, prompt_ids.shape[1] + steps)
    device = prompt_ids.device
    hidden = encode_prompts(decoder, cache, cache_arg, prompt_ids, prompt_mask)  # (U, H)
    same_bits = SAME_BITS_ROWS if batch >= SAME_BITS_ROWS else 0  # (SAME_BITS_ROWS)
    short = same_bits - len(hidden)
    if short > 0:
        hidden = torch.cat([hidden, hidden.new_zeros(short, hidden.shape[1])])
    # the first token's distribution once per distinct prompt, then one row per sample
    logp = next_token_logprobs(lm_head(hidden).float(), settings)[index]  # (B, V)

    if batch != len(hidden) or not torch.equal(index, torch.arange(batch, device=device)):
        cache.reorder_cache(index)  # (U, ...) -> (B, ...): G rows share each prompt's prefix
    tokens = torch.full((batch, steps), pad_id, dtype=torch.long, device=device)  # (B, T)
    logprobs = torch.zeros(batch, steps, device=device)  # (B, T)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)  # (B,)
    stops = torch.tensor(stop_ids, dtype=torch.long, device=device)

    rows = torch.arange(batch, device=device)  # (b,) the row each batch position decodes
    live = torch.ones(batch, dtype=torch.bool, device=device)  # (b,) not stopped yet
    mask = prompt_mask[index]  # (b, S + t)
    position = prompt_mask.sum(-1)[index]  # (b,) position of the next token
    for t in range(steps):
        token = draw(logp, settings, noise[rows, t])  # (b,)
        at = rows[live]
        tokens[at, t] = token[live]
        logprobs[at, t] = logp.gather(-1, token[:, None]).squeeze(-1)[live]
        lengths[at] = t + 1
        live = live & ~torch.isin(token, stops)  # (b,)
        if t == steps - 1 or not live.any():
            break
        stopped = len(rows) - int(live.sum())
        if stopped and STOPPED_ROW_STEPS * stopped * (steps - 1 - t) >= len(rows):
            keep = live.nonzero().squeeze(-1)  # stopped rows leave the batch (and the cache)
            if len(keep) < same_bits:  # some stay, computed and ignored
                kept = (~live).nonzero().squeeze(-1)[:same_bits - len(keep)]
                keep = torch.cat([keep, kept]).sort().values
            if len(keep) < len(rows):
                cache.reorder_cache(keep)
                rows, token, mask, position, live = (rows[keep], token[keep], mask[keep],
                                                     position[keep], live[keep])
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        hidden = decoder(input_ids=token[:, None], attention_mask=mask,
                         position_ids=position[:, None], use_cache=True,
                         **cache_arg).last_hidden_state[:, -1]  # (b, H)
        logp = next_token_logprobs(lm_head(hidden).float(), settings)  # (b, V)
        position = position + 1

    width = int(lengths.max().item())
    completion_mask = torch.arange(width, device=device) < lengths[:, None]  # (B, T')
    return tokens[:, :width], logprobs[:, :width], completion_mask


def rows_that_fit(tokenizer, prompts: Sequence[str], max_new_tokens: int) -> int:
    """How many completions of these rendered prompts one call can sample with its
    key/value cache within ``CALL_POSITIONS`` positions (rows x (the longest prompt, in
    tokens, + ``max_new_tokens``))."""
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
    return CALL_POSITIONS // (max(map(len, ids), default=0) + max_new_tokens)


def sample(model, tokenizer, prompts: list[str], n: int, settings: SamplingSettings, *,
           seed: int | Sequence[int] = 0) -> Rollout:
    """``n`` completions per rendered prompt; deterministic for a given ``seed`` on CPU."""
    return LocalSampler(model, tokenizer, settings).generate(prompts, n, seed=seed)


def group_seeds(seed: int | Sequence[int], groups: int) -> list[int]:
    """The generator seed of each of ``groups`` groups: (seed, p) for group p when ``seed``
    is one number, else ``seed`` itself, one per group."""
    if isinstance(seed, int):
        return [derive_seed(seed, p) for p in range(groups)]
    seeds = [int(s) for s in seed]
    if len(seeds) != groups:
        raise ValueError(f"{len(seeds)} group seeds for {groups} prompts")
    return seeds


def group_noise(seeds: Sequence[int], n: int, steps: int) -> Tensor:
    """(len(seeds) * n, steps) fp64 uniforms: group p's n rows from a generator seeded with
    ``seeds[p]``, so a group's noise does not depend on the groups around it."""
    rows = [torch.rand(n, steps, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(s)) for s in seeds]
    return torch.cat(rows) if rows else torch.zeros(0, steps, dtype=torch.float64)


@dataclass
class LocalSampler:
    """The in-process rollout engine: the policy itself, on its own device."""

    model: nn.Module
    tokenizer: object
    settings: SamplingSettings

    def generate(self, prompts: list[str], n: int, *, seed: int | Sequence[int]) -> Rollout:
        model, tokenizer = self.model, self.tokenizer
        seeds = group_seeds(seed, len(prompts))  # before any work: a wrong count is refused
        distinct = list(dict.fromkeys(prompts))  # each distinct prompt is encoded once
        where = {prompt: i for i, prompt in enumerate(distinct)}
        device = next(model.parameters()).device
        enc = tokenizer(distinct, return_tensors="pt", padding=True, add_special_tokens=False)
        unique_ids = enc["input_ids"].to(device)  # (U, S)
        unique_mask = enc["attention_mask"].to(device)  # (U, S)
        # row i * n + j is sample j of prompts[i] (a prompt listed twice gets 2n fresh rows)
        index = torch.tensor([where[p] for p in prompts], device=device).repeat_interleave(n)
        noise = group_noise(seeds, n, self.settings.max_new_tokens).to(device)
        stop_ids = stop_token_ids(model, tokenizer)
        was_training = model.training
        model.eval()
        try:
            tokens, logprobs, completion_mask = sample_tokens(
                model, unique_ids, unique_mask, index, self.settings,
                stop_ids, tokenizer.pad_token_id, noise)
        finally:
            model.train(was_training)
        prompt_ids, prompt_mask = unique_ids[index], unique_mask[index]  # (B, S)
        stops = torch.tensor(stop_ids, device=device)
        truncated = ~(torch.isin(tokens, stops) & completion_mask).any(-1)  # (B,)
        texts = tokenizer.batch_decode(
            [row[m] for row, m in zip(tokens, completion_mask, strict=True)],
            skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return Rollout(
            input_ids=torch.cat([prompt_ids, tokens], dim=1),
            attention_mask=torch.cat([prompt_mask, completion_mask.long()], dim=1),
            completion_mask=completion_mask,
            prompt_len=prompt_ids.shape[1],
            texts=texts,
            truncated=truncated,
            group_size=n,
            sampling_logprobs=logprobs,
        )
