"""The prefix-shared sampler draws from exactly the distribution the trainer scores.

A tiny real Llama, character-level tokenizer: per-step probabilities against the scoring
pass, token frequencies over many draws against the exact distribution, prompts of
different lengths, stops at different steps, nucleus truncation, seeding.
"""

from __future__ import annotations

import copy

import pytest
import torch

from maspo.logprobs import shared_prompt_logprobs, token_logprobs
from maspo.precision import autocast, prepare_model
from maspo.rollout import LocalSampler, SamplingSettings, sample
from maspo.rollout.sampler import group_seeds
from maspo.testing import tiny_model, tiny_tokenizer

TEMPERATURE = 0.7
PROMPTS = ["What is 2+2?", "hi", "Count: 1 2 3 4 5 6 7 8"]  # 3 different lengths
CHI2_SIGMAS = 6.0
"""A chi-square statistic is accepted up to df + 6 sd (sd = sqrt(2 df)); draws are seeded,
so the check is deterministic, and a wrong distribution lands far above it."""


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    """A tiny Llama whose next-token distributions are peaked and depend on the prefix."""
    model = tiny_model(tokenizer, seed=3).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(6.0)  # (tied embeddings) sharper, position-dependent
    # a second stop token, common enough that rows end at different steps (as a
    # generation_config listing several EOS ids does)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop_token(tokenizer)]
    return model


@pytest.fixture(scope="module")
def models(model):
    """The model per precision: under bf16 as the trainer samples (autocast on, its
    multi-token attention in fp32), the same weights."""
    bf16 = copy.deepcopy(model)
    prepare_model(bf16, "bf16")
    return {"fp32": model, "bf16": bf16}


def sample_at(precision: str, models, *args, **kwargs):
    """``sample`` under ``precision``'s autocast."""
    with autocast(precision, "cpu"):
        return sample(models[precision], *args, **kwargs)


def stop_token(tokenizer) -> int:
    return tokenizer.convert_tokens_to_ids("s")  # p ~ 0.08 after "hi"


def prompt_distribution(model, tokenizer, prompt: str, completion: list[int]) -> torch.Tensor:
    """(V,) exact next-token probabilities softmax(logits / T) after prompt + completion."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] + completion
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    return torch.softmax(logits / TEMPERATURE, -1)


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    """Pearson statistic of ``counts`` against ``probs`` (cells with expectation >= 5
    separately, the rest pooled into one cell), and its acceptance limit."""
    expected = probs.double() * counts.sum()
    big = expected >= 5
    obs = torch.cat([counts[big].double(), counts[~big].double().sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = exp > 0
    assert (obs[~keep] == 0).all(), "drew a token of probability 0"
    stat = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum().item()
    df = int(keep.sum()) - 1
    return stat, df + CHI2_SIGMAS * (2 * df) ** 0.5


def test_sampled_tokens_have_the_scored_logprobs(model, tokenizer):
    """What the sampler drew each token from is what the trainer's log-prob pass scores,
    for prompts of different lengths (left-padded together) and early stops."""
    rollout = sample(model, tokenizer, PROMPTS, 4,
                     SamplingSettings(max_new_tokens=12, temperature=TEMPERATURE), seed=0)
    lengths = rollout.completion_mask.sum(-1)
    assert lengths.min() < lengths.max() == 12  # stops at different steps, and truncation
    s, g = rollout.prompt_len, rollout.group_size
    prompt_mask = rollout.attention_mask[::g, :s]
    assert prompt_mask.sum(-1).unique().numel() == 3  # really different prompt lengths
    shared = shared_prompt_logprobs(
        model, rollout.input_ids[::g, :s], prompt_mask, rollout.completion_ids,
        rollout.completion_mask.long(), torch.arange(3).repeat_interleave(g),
        temperature=TEMPERATURE)
    full = token_logprobs(model, rollout.input_ids, rollout.attention_mask, s,
                          temperature=TEMPERATURE)
    mask = rollout.completion_mask
    drawn = rollout.sampling_logprobs  # (B, T)
    torch.testing.assert_close(drawn, shared.logprobs.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(drawn, full.logprobs.detach(), atol=1e-5, rtol=0)
    assert (drawn[mask] < 0).all() and (drawn[~mask] == 0).all()


def test_rows_end_at_their_stop_token_and_pad_after_it(model, tokenizer):
    stop = stop_token(tokenizer)
    rollout = sample(model, tokenizer, PROMPTS, 6,
                     SamplingSettings(max_new_tokens=10, temperature=TEMPERATURE), seed=1)
    ids, mask = rollout.completion_ids, rollout.completion_mask
    for row, m, truncated, text in zip(ids, mask, rollout.truncated, rollout.texts,
                                       strict=True):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()  # one contiguous run from the start
        is_stop = torch.isin(row[:n], torch.tensor([stop, tokenizer.eos_token_id]))
        assert not is_stop[:-1].any()  # nothing is generated after a stop token
        assert bool(truncated) == (not is_stop[-1])
        assert (row[n:] == tokenizer.pad_token_id).all()
        assert text == tokenizer.decode(row[:n], skip_special_tokens=True)
    assert rollout.truncated.any() and not rollout.truncated.all()
    assert rollout.attention_mask[:, rollout.prompt_len:].bool().equal(mask)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stopped_rows_leave_the_batch_early_or_late_with_the_same_result(
        model, tokenizer, models, precision, monkeypatch):
    """Stopped rows leave the batch at once (each stop copies the cache) or stay to the
    end (computed, ignored): the same tokens and log-probs, bit for bit, and the batch
    really shrank in the one and not in the other."""
    import maspo.rollout.sampler as sampler
    from maspo.rollout.kv_cache import PreallocatedLayer

    settings = SamplingSettings(max_new_tokens=10, temperature=TEMPERATURE)
    rollouts, reorders = [], []
    original = PreallocatedLayer.reorder_cache
    for steps in (10**6, 0):  # leave at every stop; never
        monkeypatch.setattr(sampler, "STOPPED_ROW_STEPS", steps)
        calls: list[int] = []
        monkeypatch.setattr(PreallocatedLayer, "reorder_cache",
                            lambda self, rows, calls=calls: calls.append(len(rows))
                            or original(self, rows))
        rollouts.append(sample_at(precision, models, tokenizer, PROMPTS, 6, settings, seed=1))
        reorders.append(calls)
    early, late = rollouts
    assert torch.equal(early.input_ids, late.input_ids)
    assert torch.equal(early.sampling_logprobs, late.sampling_logprobs)
    assert early.truncated.any() and not early.truncated.all()  # rows stopped mid-way
    assert min(reorders[0]) < len(PROMPTS) * 6 == min(reorders[1])  # shrank / never


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_first_tokens_follow_softmax_over_temperature(model, tokenizer, models, precision):
    """Over 20,000 draws the first token's frequencies match softmax(logits / T) of the
    fp32 model, also when sampling under bf16 autocast."""
    prompt = PROMPTS[0]
    rollout = sample_at(precision, models, tokenizer, [prompt, PROMPTS[2]], 10_000,
                        SamplingSettings(max_new_tokens=1, temperature=TEMPERATURE), seed=2)
    vocab = model.config.vocab_size
    for k, text in enumerate([prompt, PROMPTS[2]]):
        first = rollout.completion_ids[k * 10_000:(k + 1) * 10_000, 0]
        counts = torch.bincount(first, minlength=vocab)
        probs = prompt_distribution(model, tokenizer, text, [])
        stat, limit = chi_square(counts, probs)
        assert stat < limit, (text, stat, limit)
        # and the check has teeth: the same counts are far from softmax(logits) at T = 1
        plain = torch.softmax(torch.log(probs) * TEMPERATURE, -1)
        assert chi_square(counts, plain)[0] > 3 * limit


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_second_tokens_follow_the_exact_two_step_distribution(model, tokenizer, models,
                                                              precision):
    """The cache copied to the G rows gives each its own continuation: the marginal of
    the second token (or 'stopped after one') equals sum_a p(a) p(b | a) of the fp32
    model, also under bf16 (where the cache holds bf16 keys and values)."""
    prompt = PROMPTS[1]
    stop = stop_token(tokenizer)
    draws = 20_000
    rollout = sample_at(precision, models, tokenizer, [prompt], draws,
                        SamplingSettings(max_new_tokens=2, temperature=TEMPERATURE), seed=4)
    vocab = model.config.vocab_size
    first_probs = prompt_distribution(model, tokenizer, prompt, [])
    stopped = vocab  # an extra cell: the row ended at its first token
    exact = torch.zeros(vocab + 1, dtype=torch.float64)
    for a in range(vocab):
        if a in (stop, tokenizer.eos_token_id):
            exact[stopped] += first_probs[a]
        else:
            exact[:vocab] += first_probs[a].double() * prompt_distribution(
                model, tokenizer, prompt, [a]).double()
    second = torch.where(rollout.completion_mask[:, 1], rollout.completion_ids[:, 1], stopped)
    assert exact[stopped] > 0.05  # a real share of rows stops after one token
    stat, limit = chi_square(torch.bincount(second, minlength=vocab + 1), exact)
    assert stat < limit, (stat, limit)


def test_nucleus_draws_only_from_the_top_p_set_renormalised(model, tokenizer):
    prompt, top_p, draws = PROMPTS[0], 0.6, 10_000
    settings = SamplingSettings(max_new_tokens=1, temperature=TEMPERATURE, top_p=top_p)
    rollout = sample(model, tokenizer, [prompt], draws, settings, seed=5)
    probs = prompt_distribution(model, tokenizer, prompt, [])
    order = probs.argsort(descending=True)
    before = probs[order].cumsum(0) - probs[order]
    nucleus = order[before < top_p]  # smallest top set with mass >= top_p
    assert 1 < len(nucleus) < 20
    truncated = torch.zeros_like(probs)
    truncated[nucleus] = probs[nucleus] / probs[nucleus].sum()
    counts = torch.bincount(rollout.completion_ids[:, 0], minlength=len(probs))
    stat, limit = chi_square(counts, truncated)  # also fails on any draw outside the set
    assert stat < limit
    expected_logp = torch.log(truncated[rollout.completion_ids[:, 0]])
    torch.testing.assert_close(rollout.sampling_logprobs[:, 0], expected_logp, atol=1e-5, rtol=0)


def test_greedy_takes_the_most_likely_token_every_step(model, tokenizer):
    rollout = sample(model, tokenizer, PROMPTS, 1,
                     SamplingSettings(max_new_tokens=5, greedy=True), seed=0)
    for k, prompt in enumerate(PROMPTS):
        tokens = rollout.completion_ids[k][rollout.completion_mask[k]].tolist()
        for t, token in enumerate(tokens):
            assert token == int(prompt_distribution(model, tokenizer, prompt,
                                                    tokens[:t]).argmax())


def test_same_seed_same_rollout_whatever_happened_before(model, tokenizer):
    """Draws come from the seed alone: the global RNG and earlier calls do not matter (a
    resumed run re-samples its step bit for bit), and the global RNG is left alone."""
    engine = LocalSampler(model, tokenizer, SamplingSettings(max_new_tokens=8,
                                                             temperature=TEMPERATURE))
    first = engine.generate(PROMPTS, 4, seed=11)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    engine.generate(PROMPTS, 4, seed=12)
    assert torch.equal(torch.get_rng_state(), state)
    again = engine.generate(PROMPTS, 4, seed=11)
    assert torch.equal(first.input_ids, again.input_ids)
    assert torch.equal(first.sampling_logprobs, again.sampling_logprobs)
    other = engine.generate(PROMPTS, 4, seed=12)
    assert not torch.equal(first.input_ids, other.input_ids)


def test_a_group_seed_list_gives_each_group_its_own_stream(model, tokenizer):
    """One seed per prompt: a group's completions follow its own seed wherever it stands in
    the call, and one number for the call is the same as its derived seeds listed."""
    engine = LocalSampler(model, tokenizer, SamplingSettings(max_new_tokens=8,
                                                             temperature=TEMPERATURE))
    whole = engine.generate(PROMPTS, 4, seed=11)
    listed = engine.generate(PROMPTS, 4, seed=group_seeds(11, len(PROMPTS)))
    assert whole.texts == listed.texts
    assert torch.equal(whole.sampling_logprobs, listed.sampling_logprobs)
    seeds = group_seeds(11, len(PROMPTS))
    alone = engine.generate(PROMPTS[2:], 4, seed=seeds[2:])  # the third group by itself
    assert alone.texts == whole.texts[8:]
    with pytest.raises(ValueError, match="2 group seeds for 3 prompts"):
        engine.generate(PROMPTS, 4, seed=seeds[:2])


def test_a_prompt_listed_twice_gets_independent_samples(model, tokenizer):
    rollout = sample(model, tokenizer, ["hi", "hi"], 8,
                     SamplingSettings(max_new_tokens=6, temperature=TEMPERATURE), seed=6)
    assert rollout.input_ids.shape[0] == 16
    assert rollout.texts[:8] != rollout.texts[8:]
    assert torch.equal(rollout.input_ids[0, :rollout.prompt_len],
                       rollout.input_ids[8, :rollout.prompt_len])


def test_the_model_is_left_in_its_training_mode(model, tokenizer):
    model.train()
    try:
        sample(model, tokenizer, PROMPTS[:1], 2, SamplingSettings(max_new_tokens=2), seed=0)
        assert model.training
    finally:
        model.eval()


@pytest.mark.parametrize("bad", [{"max_new_tokens": 0}, {"temperature": 0.0},
                                 {"top_p": 0.0}, {"top_p": 1.5}])
def test_bad_sampling_settings_are_refused(bad):
    settings = {"max_new_tokens": 4, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        SamplingSettings(**settings)


def test_groups_sampled_together_or_apart_get_the_same_bits(tokenizer, one_thread):
    """At the default model's width (576) the CPU's matmuls round a row otherwise at 1
    row, at 2-15 rows and from 16 up (an Intel CPU; an AMD one at 1-3 rows and from 4
    up). A call of 16 rows or more keeps every matmul at 16
    rows or more, so each group's completions and log-probs are the same bit for bit
    sampled alone (16 rows: one distinct prompt, rows stopping) or with others in one call
    (what dynamic sampling does when it samples draws ahead), for prompts of one length
    and 16 tokens or more, on one thread."""
    wide = tiny_model(tokenizer, seed=4, hidden=576, layers=1).eval()
    wide.generation_config.eos_token_id = [tokenizer.eos_token_id, stop_token(tokenizer)]
    prompts = [f"Question: what is {a}+{b}?" for a, b in ((12, 34), (56, 78), (90, 11),
                                                          (23, 45))]  # 24 tokens each
    seeds = group_seeds(5, len(prompts))
    engine = LocalSampler(wide, tokenizer, SamplingSettings(max_new_tokens=12, temperature=1.0))
    together = engine.generate(prompts, 16, seed=seeds)
    assert together.truncated.any() and not together.truncated.all()  # rows stopped mid-way
    for p, prompt in enumerate(prompts):
        alone = engine.generate([prompt], 16, seed=seeds[p:p + 1])
        rows = slice(16 * p, 16 * (p + 1))
        assert alone.texts == together.texts[rows]
        width = alone.sampling_logprobs.shape[1]
        assert torch.equal(alone.sampling_logprobs, together.sampling_logprobs[rows, :width])
