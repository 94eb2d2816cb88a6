"""A model's saved sampling defaults (generation_config.json) never reach the sampler.

HF `generate` fills every field we leave unset from the model's generation config, so a
Qwen-style repetition_penalty or no_repeat_ngram_size would silently change what is
sampled while the trainer scores plain softmax(logits / T). The sampler must ignore them.
"""

from __future__ import annotations

import json

import pytest
import torch

from maspo.logprobs import token_logprobs
from maspo.models import load_policy
from maspo.rollout import SamplingSettings, sample
from maspo.testing import save_tiny_model

TEMPERATURE = 0.7
PROMPT = "Count: 1 2 3 4 5 6 7 8"  # the tiny model mostly continues it with a prompt token
DRAWS = 8_000
SIGMAS = 5.0  # a rate is accepted within 5 standard errors (draws are seeded)
HOSTILE_DEFAULTS = {
    "repetition_penalty": 1.8,  # divides the logits of every token already seen
    "no_repeat_ngram_size": 1,  # forbids every token already seen
    "top_k": 3,
    "min_p": 0.2,
    "temperature": 0.2,
    "do_sample": True,
}


@pytest.fixture(scope="module")
def defaults_model(tmp_path_factory):
    """A tiny model directory whose generation_config.json carries sampling defaults."""
    path = save_tiny_model(tmp_path_factory.mktemp("defaults") / "model", seed=3)
    config_file = path / "generation_config.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**saved, **HOSTILE_DEFAULTS}))
    model, tokenizer = load_policy(path)
    with torch.no_grad():
        model.lm_head.weight.mul_(6.0)  # peaked: most mass on tokens already in the prompt
    assert model.generation_config.no_repeat_ngram_size == 1  # the defaults were loaded
    return model, tokenizer


def test_repeats_appear_at_the_softmax_rate_despite_the_saved_penalties(defaults_model):
    model, tokenizer = defaults_model
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids])).logits[0, -1]
    probs = torch.softmax(logits.float() / TEMPERATURE, -1)  # (V,)
    seen = torch.tensor(sorted(set(prompt_ids)))
    expected = probs[seen].sum().item()
    assert expected > 0.5  # repeats are what this model mostly does

    rollout = sample(model, tokenizer, [PROMPT], DRAWS,
                     SamplingSettings(max_new_tokens=1, temperature=TEMPERATURE), seed=0)
    first = rollout.completion_ids[:, 0]
    rate = torch.isin(first, seen).float().mean().item()
    se = (expected * (1 - expected) / DRAWS) ** 0.5
    assert abs(rate - expected) < SIGMAS * se, (rate, expected)  # no_repeat_ngram would give 0
    # beyond top_k = 3 and min_p: tokens of probability < 0.2 * max are drawn too
    assert len(first.unique()) > 10
    small = probs < HOSTILE_DEFAULTS["min_p"] * probs.max()
    small_rate = small[first].float().mean().item()
    assert abs(small_rate - probs[small].sum().item()) < SIGMAS * (0.25 / DRAWS) ** 0.5


def test_later_tokens_are_scored_exactly_as_sampled(defaults_model):
    """At every step of longer completions the sampling distribution is softmax(logits / T)
    as the log-prob pass computes it, so the first update's ratio is exactly 1."""
    model, tokenizer = defaults_model
    rollout = sample(model, tokenizer, [PROMPT, "hi"], 4,
                     SamplingSettings(max_new_tokens=8, temperature=TEMPERATURE), seed=1)
    scored = token_logprobs(model, rollout.input_ids, rollout.attention_mask,
                            rollout.prompt_len, temperature=TEMPERATURE).logprobs
    torch.testing.assert_close(rollout.sampling_logprobs, scored.detach(), atol=1e-5, rtol=0)
    completions = rollout.completion_ids[rollout.completion_mask.all(-1)]
    repeats = [len(set(row.tolist())) < len(row) for row in completions]
    assert any(repeats)  # repeated tokens within a completion (forbidden by the defaults)
