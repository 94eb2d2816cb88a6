"""Fixtures of the rollout tests: one CPU thread, and a prompt pass that records its
decoder calls."""

from __future__ import annotations

import pytest
import torch

from maspo.logprobs import decoder_and_head
from maspo.rollout import sampler
from maspo.rollout.kv_cache import sampling_cache


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (more threads split a matmul by its rows)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def encode():
    """A function that runs ``encode_prompts`` over the left-padded ``prompts`` into a
    new sampling cache, as the sampler does, and returns the hidden states, the cache,
    the positions each decoder call computed and the tokenizer's encoding."""

    def run(model, tokenizer, prompts: list[str]):
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        decoder, _ = decoder_and_head(model)
        calls: list[int] = []
        hook = decoder.register_forward_pre_hook(
            lambda _, args, kwargs: calls.append(kwargs["input_ids"].numel()),
            with_kwargs=True)
        try:
            with torch.no_grad():
                cache, cache_arg = sampling_cache(model, decoder, enc["input_ids"].shape[1] + 4)
                hidden = sampler.encode_prompts(decoder, cache, cache_arg, enc["input_ids"],
                                                enc["attention_mask"])
        finally:
            hook.remove()
        return hidden, cache, calls, enc

    return run
