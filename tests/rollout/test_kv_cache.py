"""The sampler's preallocated key/value cache decodes exactly as transformers' DynamicCache.

A tiny real Llama decodes a left-padded prompt batch, copied to several rows per prompt,
then rows leave mid-way, on both caches; the buffers must grow past their first size.
"""

from __future__ import annotations

import pytest
import torch

from maspo.logprobs import decoder_and_head, new_cache
from maspo.precision import autocast, prepare_model
from maspo.rollout.kv_cache import PreallocatedLayer, sampling_cache
from maspo.testing import tiny_model, tiny_tokenizer

PROMPTS = ["What is 2+2?", "hi"]  # different lengths: left padding in the prefix
ROWS = [0, 0, 1, 1, 1]  # prompt of each decoded row
KEEP = {2: [0, 2, 3, 4], 4: [1, 2]}  # at step t, the rows (of the current batch) that go on
STEPS = 6


def decode(model, make_cache, precision: str):
    """Hidden states of the prefix pass and of each decode step, and the cache used."""
    tokenizer = tiny_tokenizer()
    decoder, _ = decoder_and_head(model)
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    mask = enc["attention_mask"]  # (U, S)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, len(tokenizer), (len(ROWS), STEPS), generator=generator)
    outputs = []
    with torch.no_grad(), autocast(precision, "cpu"):
        cache, cache_arg = make_cache(decoder)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        outputs.append(decoder(input_ids=enc["input_ids"], attention_mask=mask,
                               position_ids=position_ids, use_cache=True,
                               **cache_arg).last_hidden_state)
        index = torch.tensor(ROWS)
        cache.reorder_cache(index)
        mask, position = mask[index], mask.sum(-1)[index]
        for t in range(STEPS):
            if t in KEEP:
                keep = torch.tensor(KEEP[t])
                cache.reorder_cache(keep)
                index, mask, position = index[keep], mask[keep], position[keep]
            mask = torch.cat([mask, mask.new_ones(len(index), 1)], dim=1)
            outputs.append(decoder(input_ids=tokens[index, t, None], attention_mask=mask,
                                   position_ids=position[:, None], use_cache=True,
                                   **cache_arg).last_hidden_state)
            position = position + 1
    return outputs, cache


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_decoding_matches_transformers_dynamic_cache(precision):
    """Every hidden state, bit for bit: under fp32 the buffers hold the values
    DynamicCache holds; under bf16 they hold the bf16 values a decode step's attention
    casts the cache to, so nothing it computes changes either."""
    model = tiny_model(tiny_tokenizer(), seed=1).eval()
    prepare_model(model, precision)  # bf16 on CPU: multi-token attention in fp32
    prompt_len = len(tiny_tokenizer()(PROMPTS[0], add_special_tokens=False)["input_ids"])
    # room for one decode step at first: the buffers have to grow twice
    ours, cache = decode(model, lambda d: sampling_cache(model, d, prompt_len + 1), precision)
    theirs, reference = decode(model, lambda d: new_cache(model, d), precision)
    assert len(ours) == STEPS + 1
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    layer = cache.layers[0]
    assert isinstance(layer, PreallocatedLayer)
    assert layer.get_seq_length() == reference.get_seq_length() == prompt_len + STEPS
    assert layer.keys.shape[2] > prompt_len + 1  # grew
    stored = torch.bfloat16 if precision == "bf16" else torch.float32
    assert layer.keys.dtype == layer.values.dtype == stored
    assert reference.layers[0].keys.dtype == torch.float32  # transformers keeps fp32 keys


def test_a_decode_step_writes_in_place():
    """Within its capacity a layer's buffers are not reallocated: a step writes one
    position; dropping rows makes new, smaller buffers."""
    model = tiny_model(tiny_tokenizer(), seed=1).eval()
    decoder, _ = decoder_and_head(model)
    cache, cache_arg = sampling_cache(model, decoder, 64)
    layer = cache.layers[0]
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    with torch.no_grad():
        decoder(input_ids=ids, use_cache=True, **cache_arg)
        buffer = layer.keys.data_ptr()
        decoder(input_ids=ids[:, :1], use_cache=True, **cache_arg)
        assert layer.keys.data_ptr() == buffer and layer.get_seq_length() == 4
        filled = layer.keys[1, :, :4].clone()
        cache.reorder_cache(torch.tensor([1]))
    assert layer.keys.shape[0] == 1 and torch.equal(layer.keys[0, :, :4], filled)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_decode_attention_reads_the_heads_in_place_with_the_same_values(precision):
    """``gqa_sdpa`` (sdpa's grouped-query mode) against transformers' sdpa (each
    key/value head copied to its query heads): one query per row, left-padded keys, bit
    for bit, under the precision's autocast."""
    generator = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, length, dim = 6, 9, 3, 40, 16
    query = torch.randn(rows, heads, 1, dim, generator=generator)
    key, value = (torch.randn(rows, kv_heads, length, dim, generator=generator)
                  for _ in range(2))
    valid = torch.arange(length) >= torch.tensor([0, 3, 7, 0, 12, 1])[:, None]  # (b, L)
    mask = valid[:, None, None, :]  # (b, 1, 1, L): left padding, as the sampler's
    with autocast(precision, "cpu"):
        ours, theirs = _both_attentions(query, key, value, mask, heads // kv_heads)
    assert ours.shape == theirs.shape == (rows, 1, heads, dim)
    assert torch.equal(ours, theirs)


def _both_attentions(query, key, value, mask, groups):
    """(maspo's ``gqa_sdpa``, transformers' sdpa) on the same inputs."""
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from maspo.precision import gqa_sdpa

    module = SimpleNamespace(num_key_value_groups=groups, training=False)
    scale = query.shape[-1] ** -0.5
    return (gqa_sdpa(module, query, key, value, mask, scaling=scale)[0],
            sdpa_attention_forward(module, query, key, value, mask, scaling=scale)[0])


@pytest.mark.parametrize("queries", [5, 24])
def test_masked_attention_over_several_tokens_reads_the_heads_in_place_alike(queries):
    """A prompt's or an update's attention at fp32 (left padding and a causal mask over
    earlier cached keys): the outputs and the gradients of query, keys and values equal
    transformers' bit for bit."""
    generator = torch.Generator().manual_seed(1)
    rows, heads, kv_heads, cached, dim = 5, 9, 3, 11, 16
    length = cached + queries
    query = torch.randn(rows, heads, queries, dim, generator=generator, requires_grad=True)
    key, value = (torch.randn(rows, kv_heads, length, dim, generator=generator,
                              requires_grad=True) for _ in range(2))
    pads = torch.tensor([0, 4, 9, 2, 0])[:, None, None]  # (b, 1, 1)
    columns, at = torch.arange(length), torch.arange(queries)[:, None] + cached  # (L,), (q, 1)
    mask = ((columns <= at) & (columns >= pads))[:, None]  # (b, 1, q, L)
    ours, theirs = _both_attentions(query, key, value, mask, heads // kv_heads)
    assert torch.equal(ours, theirs)
    upstream = torch.randn(ours.shape, generator=generator)
    for a, b in zip(torch.autograd.grad(ours, (query, key, value), upstream),
                    torch.autograd.grad(theirs, (query, key, value), upstream), strict=True):
        assert torch.equal(a, b)


def test_a_prepared_model_decodes_as_transformers_sdpa_does():
    """The whole decoder: every decode step's hidden states with maspo's CPU attention
    equal those with transformers' own sdpa, bit for bit (fp32)."""
    model = tiny_model(tiny_tokenizer(), seed=1).eval()
    theirs, _ = decode(model, lambda d: new_cache(model, d), "fp32")
    prepare_model(model, "fp32")
    assert model.config._attn_implementation != "sdpa"
    ours, _ = decode(model, lambda d: new_cache(model, d), "fp32")
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
