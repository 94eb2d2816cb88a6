"""A long prompt pass on a CPU runs a few prompts a call, and computes what one call does.

A tiny real Llama at the default model's width (576, where a CPU matmul on one thread
rounds a row the same from 16 rows up: ``SAME_BITS_ROWS``) encodes left-padded prompts
whole, or after a shared system turn, in one call and in several. The hidden states, the
keys and values left in the cache and the completions then drawn must be the same bit for
bit, and the calls must really have been several, each of 16 rows or more.
"""

from __future__ import annotations

import pytest
import torch

import maspo.rollout.sampler as sampler
from maspo.precision import autocast, prepare_model
from maspo.rollout import LocalSampler, SamplingSettings
from maspo.rollout.kv_cache import PreallocatedLayer
from maspo.testing import tiny_model, tiny_tokenizer

SYSTEM = "You are a careful assistant. Answer with one number."
QUESTIONS = [f"What is {a}+{b}?" for a, b in ((2, 2), (12, 30), (7, 3), (99, 11), (9, 9),
                                               (40, 4), (1, 0), (63, 5), (8, 71))]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model(tokenizer, seed=4, hidden=576, layers=2).eval()


def prompts(tokenizer, system: bool) -> list[str]:
    head = [{"role": "system", "content": SYSTEM}] if system else []
    return [tokenizer.apply_chat_template([*head, {"role": "user", "content": q}],
                                          tokenize=False, add_generation_prompt=True)
            for q in QUESTIONS]


def encoded(encode, model, tokenizer, texts, pass_rows: int, monkeypatch):
    """``encode_prompts`` with ``PROMPT_PASS_ROWS`` = ``pass_rows`` (the ``encode``
    fixture): the hidden states, the cache, the rows of each decoder call, the encoding."""
    monkeypatch.setattr(sampler, "PROMPT_PASS_ROWS", pass_rows)
    return encode(model, tokenizer, texts)


@pytest.mark.parametrize("system", [False, True], ids=["whole", "after-shared-run"])
def test_a_pass_in_several_calls_leaves_the_same_bits(model, tokenizer, system, one_thread,
                                                      encode, monkeypatch):
    texts = prompts(tokenizer, system)
    one_hidden, one, one_calls, enc = encoded(encode, model, tokenizer, texts, 10**9,
                                              monkeypatch)
    hidden, split, calls, _ = encoded(encode, model, tokenizer, texts, 64, monkeypatch)
    width = enc["input_ids"].shape[1]
    shared = 1 if system else 0  # the shared run's own call, for one prompt of each width
    assert len(one_calls) == 1 + shared
    assert len(calls) >= 3 + shared and sum(calls) == sum(one_calls)
    assert min(calls[shared:]) >= sampler.SAME_BITS_ROWS
    assert torch.equal(hidden, one_hidden)
    real = enc["attention_mask"].bool()  # pad columns hold no value anyone reads
    for a, b in zip(split.layers, one.layers, strict=True):
        assert isinstance(a, PreallocatedLayer) and a.length == b.length == width
        assert a.keys.shape == b.keys.shape  # the same room left for the completions
        for kind in ("keys", "values"):
            x, y = getattr(a, kind)[:, :, :width], getattr(b, kind)[:, :, :width]
            assert torch.equal(x.transpose(1, 2)[real], y.transpose(1, 2)[real])


def test_completions_drawn_after_a_split_pass_do_not_change(model, tokenizer, one_thread,
                                                            monkeypatch):
    texts = prompts(tokenizer, system=True)
    engine = LocalSampler(model, tokenizer, SamplingSettings(max_new_tokens=6,
                                                             temperature=1.0))
    rollouts = []
    for rows in (10**9, 64):
        monkeypatch.setattr(sampler, "PROMPT_PASS_ROWS", rows)
        rollouts.append(engine.generate(texts, 2, seed=3))
    one, split = rollouts
    assert torch.equal(split.input_ids, one.input_ids)
    assert torch.equal(split.sampling_logprobs, one.sampling_logprobs)
    assert split.texts == one.texts and len(set(one.texts)) > 9


def test_the_calls_are_whole_prompts_of_sixteen_rows_or_more(monkeypatch):
    cpu = torch.device("cpu")
    # the study's held-out pass: 6 calls of 42-43 prompts x 24 columns
    assert sampler.pass_bounds(256, 24, cpu) == [(0, 43), (43, 85), (85, 128), (128, 171),
                                                 (171, 213), (213, 256)]
    assert sampler.pass_bounds(40, 24, cpu) == [(0, 40)]  # 960 positions: one call
    assert sampler.pass_bounds(3, 2000, cpu) == [(0, 1), (1, 2), (2, 3)]  # a prompt a call
    assert sampler.pass_bounds(256, 24, torch.device("cuda")) == [(0, 256)]
    monkeypatch.setattr(sampler, "PROMPT_PASS_ROWS", 8)
    assert sampler.pass_bounds(12, 3, cpu) == [(0, 6), (6, 12)]  # 18 rows each
    assert sampler.pass_bounds(4, 3, cpu) == [(0, 4)]  # 2 calls would run 6 rows each
    assert sampler.pass_bounds(40, 1, cpu) == [(0, 20), (20, 40)]  # not 5 of 8 rows
    with autocast("bf16", "cpu"):
        assert sampler.pass_bounds(256, 24, cpu) == [(0, 256)]


def test_under_bf16_autocast_a_long_pass_stays_one_call(model, tokenizer, encode,
                                                        monkeypatch):
    """bf16 matmul kernels were not checked to round a row alike at any row count."""
    bf16 = tiny_model(tokenizer, seed=4, hidden=576, layers=2).eval()
    prepare_model(bf16, "bf16")
    with autocast("bf16", "cpu"):
        _, _, calls, _ = encoded(encode, bf16, tokenizer, prompts(tokenizer, False), 64,
                                 monkeypatch)
    assert len(calls) == 1
