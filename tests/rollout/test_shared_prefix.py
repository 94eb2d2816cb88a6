"""Prompts that share a leading run (a chat template's system turn) encode it once, and the
sampler still computes exactly what it computes when every prompt runs whole.

A tiny real Llama with a character-level chat template: every prompt starts with the same
system turn, the questions differ in length (so the batch is left-padded at several
widths). The shared encoding must leave the same keys and values in the cache, give the
same last hidden states and draw the same completions with the same log-probs, bit for
bit where this machine's attention kernel gives a query row the same bits whichever
query rows share its call (``rows_exact``: true of torch's CPU kernel over MKL on the
Intel CPUs here, false on an AMD one, where the values agree to float rounding); and it
must really have run (a cut cache, fewer positions computed).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import maspo.rollout.sampler as sampler
from maspo.precision import autocast, prepare_model
from maspo.rollout import LocalSampler, SamplingSettings
from maspo.rollout.kv_cache import PreallocatedLayer
from maspo.testing import tiny_model, tiny_tokenizer

SYSTEM = "You are a careful assistant. Answer with one number."
QUESTIONS = ["What is 2+2?", "What is 12+30?", "What is 7-3?", "Name 3 primes.",
             "What is 99-11?", "What is 9+9?", "Count to 4.", "What is 4*2?"]  # 3 lengths


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
        tokenize=False, add_generation_prompt=True) for q in QUESTIONS]


@pytest.fixture(scope="module")
def model(tokenizer):
    model = tiny_model(tokenizer, seed=2).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # (tied embeddings) peaked, prefix-dependent draws
    return model


def rows_exact(model, width: int, cached: int) -> bool:
    """Whether scaled dot-product attention here gives the last ``width - cached`` query
    rows the same bits alone as among all ``width`` rows (random values, the model's
    head shape, a causal mask as the encoding passes it)."""
    config = model.config
    heads, dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    q, k, v = torch.randn(3, 1, heads, width, dim, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(width, width, dtype=torch.bool).tril()[None, None]
    whole = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    part = F.scaled_dot_product_attention(q[:, :, cached:], k, v, attn_mask=mask[:, :, cached:])
    return torch.equal(part, whole[:, :, cached:])


def assert_same(a: torch.Tensor, b: torch.Tensor, exact: bool) -> None:
    if exact:
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def encoded(encode, model, tokenizer, prompts, saving: int, monkeypatch):
    """``encode_prompts`` with ``MIN_PREFIX_SAVING`` = ``saving`` (the ``encode``
    fixture): the hidden states, the cache, the number of prompt positions the decoder
    computed and the encoding."""
    monkeypatch.setattr(sampler, "MIN_PREFIX_SAVING", saving)
    hidden, cache, calls, enc = encode(model, tokenizer, prompts)
    return hidden, cache, sum(calls), enc


def test_the_shared_run_is_found_in_left_padded_prompts(tokenizer, prompts):
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    head = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}],
                                         tokenize=False) + "<|im_start|>user\n"
    expected = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    assert len({len(q) for q in QUESTIONS}) == 3  # three padding widths
    # the questions differ from their first character on
    assert sampler.shared_prefix_length(enc["input_ids"], enc["attention_mask"]) == expected
    # identical prompts share all but their last token; unrelated ones share nothing
    same = tokenizer(["abc", "abc"], return_tensors="pt", padding=True)
    assert sampler.shared_prefix_length(same["input_ids"], same["attention_mask"]) == 2
    other = tokenizer(["abc", "xbc"], return_tensors="pt", padding=True)
    assert sampler.shared_prefix_length(other["input_ids"], other["attention_mask"]) == 0


def test_shared_encoding_leaves_the_whole_batch_cache_bit_for_bit(model, tokenizer, prompts,
                                                                  encode, monkeypatch):
    whole_hidden, whole, whole_work, enc = encoded(encode, model, tokenizer, prompts, 10**9,
                                                   monkeypatch)
    shared_hidden, shared, shared_work, _ = encoded(encode, model, tokenizer, prompts, 0,
                                                    monkeypatch)
    width = enc["input_ids"].shape[1]
    assert whole_work == len(prompts) * width
    # the system turn ran for one prompt of each of the 3 padding widths, not all 8
    assert shared_work < 0.7 * whole_work
    exact = rows_exact(model, width, sampler.shared_prefix_length(enc["input_ids"],
                                                                  enc["attention_mask"]))
    assert_same(shared_hidden, whole_hidden, exact)
    real = enc["attention_mask"].bool()  # pad columns hold no value anyone reads
    for a, b in zip(shared.layers, whole.layers, strict=True):
        assert isinstance(a, PreallocatedLayer) and a.length == b.length == width
        for kind in ("keys", "values"):
            x, y = getattr(a, kind)[:, :, :width], getattr(b, kind)[:, :, :width]
            assert_same(x.transpose(1, 2)[real], y.transpose(1, 2)[real], exact)


def test_sampled_completions_do_not_change(model, tokenizer, prompts, monkeypatch):
    settings = SamplingSettings(max_new_tokens=8, temperature=1.0)
    rollouts = []
    for saving in (10**9, 0):
        monkeypatch.setattr(sampler, "MIN_PREFIX_SAVING", saving)
        rollouts.append(LocalSampler(model, tokenizer, settings).generate(prompts, 3, seed=5))
    whole, shared = rollouts
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    exact = rows_exact(model, enc["input_ids"].shape[1],
                       sampler.shared_prefix_length(enc["input_ids"], enc["attention_mask"]))
    assert torch.equal(shared.input_ids, whole.input_ids)
    assert_same(shared.sampling_logprobs, whole.sampling_logprobs, exact)
    assert shared.texts == whole.texts and len(set(whole.texts)) > 10


def test_under_bf16_autocast_the_prompts_run_whole(model, tokenizer, prompts, encode,
                                                  monkeypatch):
    """The bf16 cache stores keys rounded, which the prompts' fp32 attention would then
    read: there the shared encoding would not be exact, so it is not used."""
    bf16 = tiny_model(tokenizer, seed=2).eval()
    bf16.load_state_dict(model.state_dict())
    prepare_model(bf16, "bf16")
    with autocast("bf16", "cpu"):
        _, _, work, enc = encoded(encode, bf16, tokenizer, prompts, 0, monkeypatch)
    assert work == enc["input_ids"].numel()
