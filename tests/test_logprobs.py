"""token_logprobs agrees with the naive full-logits computation, in value and gradient."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

import maspo.logprobs as logprobs_module
from maspo.logprobs import (
    MIN_SEGMENT_SAVING,
    MIN_SEGMENT_SAVING_AUTOCAST,
    length_segments,
    segment_saving,
    shared_prompt_logprobs,
    token_logprobs,
)

VOCAB = 257
PROMPT = 7  # prompt length after left padding; the completion starts here
COMPLETION = 6
TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    """A tiny real Llama with weights large enough for peaked, position-dependent outputs."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.2,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows: left-padded prompt, right-padded completion, and no padding at all."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, PROMPT + COMPLETION), generator=generator)  # (B, L)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # 3 pads before a 4-token prompt
    mask[1, -2:] = 0  # completion of 4 tokens, then 2 pads
    ids[mask == 0] = 0
    return ids, mask


def naive(model, ids, mask, start, temperature=1.0):
    """Reference: full (B, L, V) logits, log_softmax, gather; zero on padding."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    logp_all = torch.log_softmax(logits[:, start - 1 : -1].float() / temperature, -1)  # (B,T,V)
    logp = logp_all.gather(-1, ids[:, start:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    keep = mask[:, start:].bool()
    return torch.where(keep, logp, 0.0), torch.where(keep, entropy, 0.0)


def test_logprobs_and_entropy_match_naive(model, batch):
    ids, mask = batch
    with torch.no_grad():
        ours = token_logprobs(
            model, ids, mask, PROMPT, temperature=TEMPERATURE, with_entropy=True, chunk_size=4
        )
        ref_logp, ref_entropy = naive(model, ids, mask, PROMPT, TEMPERATURE)
    assert ours.logprobs.shape == (3, COMPLETION)
    torch.testing.assert_close(ours.logprobs, ref_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.entropy, ref_entropy, atol=1e-5, rtol=0)
    assert ref_entropy[mask[:, PROMPT:].bool()].min() > 0.1  # a non-degenerate check


def test_entropy_is_none_unless_requested(model, batch):
    ids, mask = batch
    with torch.no_grad():
        assert token_logprobs(model, ids, mask, PROMPT).entropy is None


def test_gradients_match_naive(model, batch):
    ids, mask = batch
    weights = torch.randn(3, COMPLETION, generator=torch.Generator().manual_seed(2))

    def grads(logp: torch.Tensor, entropy: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        ((logp * weights).sum() + 0.1 * entropy.sum()).backward()
        return [p.grad.clone() for p in model.parameters()]

    ours = token_logprobs(
        model, ids, mask, PROMPT, temperature=TEMPERATURE, with_entropy=True, chunk_size=5
    )
    ours_grads = grads(ours.logprobs, ours.entropy)
    ref_grads = grads(*naive(model, ids, mask, PROMPT, TEMPERATURE))
    for got, want in zip(ours_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert any(g.abs().sum() > 0 for g in ours_grads)


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 10_000])
def test_chunk_size_does_not_change_results(model, batch, chunk_size):
    ids, mask = batch
    with torch.no_grad():
        ref = token_logprobs(model, ids, mask, PROMPT, with_entropy=True, chunk_size=7)
        got = token_logprobs(model, ids, mask, PROMPT, with_entropy=True, chunk_size=chunk_size)
    # equal up to fp32 rounding of a 257-term sum (entropies are ~5: a few ulps is ~1e-6)
    torch.testing.assert_close(got.logprobs, ref.logprobs, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.entropy, ref.entropy, atol=1e-6, rtol=1e-6)


def test_padding_is_zero_and_left_padding_matches_the_unpadded_row(model, batch):
    ids, mask = batch
    with torch.no_grad():
        padded = token_logprobs(model, ids, mask, PROMPT, with_entropy=True)
        alone = token_logprobs(model, ids[:1, 3:], mask[:1, 3:], PROMPT - 3, with_entropy=True)
        cut = token_logprobs(model, ids[1:2, :-2], mask[1:2, :-2], PROMPT, with_entropy=True)
    torch.testing.assert_close(padded.logprobs[:1], alone.logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.entropy[:1], alone.entropy, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded.logprobs[1, :-2], cut.logprobs[0], atol=1e-5, rtol=0)
    assert torch.equal(padded.logprobs[1, -2:], torch.zeros(2))
    assert torch.equal(padded.entropy[1, -2:], torch.zeros(2))
    assert (padded.logprobs[mask[:, PROMPT:].bool()] < 0).all()


def test_padded_completion_tokens_get_no_gradient(model, batch):
    ids, mask = batch
    changed = ids.clone()
    changed[1, -2:] = 5  # different ids under the pad mask must not matter

    def grads(tokens: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad()
        token_logprobs(model, tokens, mask, PROMPT).logprobs.sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    for got, want in zip(grads(changed), grads(ids), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_bfloat16_model_returns_float32(model, batch):
    ids, mask = batch
    low = LlamaForCausalLM(model.config).to(torch.bfloat16).eval()
    low.load_state_dict(model.state_dict())
    with torch.no_grad():
        got = token_logprobs(low, ids, mask, PROMPT).logprobs
        ref, _ = naive(model, ids, mask, PROMPT)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=0.1, rtol=0)  # bf16 keeps ~3 significant digits


def test_bad_completion_start_is_rejected(model, batch):
    ids, mask = batch
    with pytest.raises(ValueError, match="completion_start"):
        token_logprobs(model, ids, mask, ids.shape[1])


@pytest.mark.parametrize(("group", "t", "segmented"), [(4, 5, False), (8, 40, True)])
def test_shared_prompt_logprobs_equal_the_concatenated_rows(model, group, t, segmented):
    """Running each prompt once and its completions on the shared cache gives the same
    log-probs, entropies and gradients as the full rows; so does a completion pass cut
    into length segments (rows of many lengths, as a long cap gives)."""
    g = torch.Generator().manual_seed(5)
    vocab = model.config.vocab_size
    prompts, s = 3, 6
    prompt_mask = torch.ones(prompts, s, dtype=torch.long)
    prompt_mask[0, :2] = 0  # left padding
    prompt_mask[2, :1] = 0
    prompt_ids = torch.randint(1, vocab, (prompts, s), generator=g) * prompt_mask
    index = torch.arange(prompts).repeat_interleave(group)
    if segmented:  # lengths 1 .. t, one row at the cap
        lengths = torch.randint(1, t + 1, (prompts * group,), generator=g)
        lengths[3] = t
        completion_mask = (torch.arange(t) < lengths[:, None]).long()
    else:
        completion_mask = torch.ones(prompts * group, t, dtype=torch.long)
        completion_mask[1, 2:] = 0  # right padding after an early stop
        completion_mask[7, 1:] = 0
    needed = (completion_mask.sum(-1) - 1).tolist()
    assert (length_segments(needed) is not None) == segmented
    completion_ids = torch.randint(1, vocab, (prompts * group, t), generator=g) * completion_mask
    full = token_logprobs(model, torch.cat([prompt_ids[index], completion_ids], 1),
                          torch.cat([prompt_mask[index], completion_mask], 1), s,
                          with_entropy=True, temperature=0.8)
    shared = shared_prompt_logprobs(model, prompt_ids, prompt_mask, completion_ids,
                                    completion_mask, index, with_entropy=True, temperature=0.8)
    assert torch.allclose(full.logprobs, shared.logprobs, atol=1e-5)
    assert torch.allclose(full.entropy, shared.entropy, atol=1e-5)
    assert torch.all(shared.logprobs[completion_mask == 0] == 0)
    params = [p for p in model.parameters() if p.requires_grad]
    grads_full = torch.autograd.grad((full.logprobs + full.entropy).sum(), params)
    grads_shared = torch.autograd.grad((shared.logprobs + shared.entropy).sum(), params)
    for a, b in zip(grads_full, grads_shared, strict=True):  # equal up to float rounding
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * a.abs().max())


def test_length_segments_cover_each_needed_position_once():
    """Each row runs in the segments that hold its needed positions and no other; a
    segment ends once half its rows are done; a small saving keeps one pass."""
    needed = [40, 3, 3, 5, 8, 20, 0, 30, 2, 4] * 4
    segments = length_segments(needed)
    assert segments is not None
    assert segments[0][0] == 0
    for (_, b, rows), (next_a, _, next_rows) in zip(segments, segments[1:]):
        assert b == next_a and set(next_rows) <= set(rows)
        assert 2 * len(next_rows) <= len(rows)
    for i, n in enumerate(needed):
        covered = sum(b - a for a, b, rows in segments if i in rows)
        assert covered >= n and all(n > a for a, _, rows in segments if i in rows)
    work = sum((b - a) * len(rows) for a, b, rows in segments)
    assert work < 0.6 * len(needed) * max(needed)
    assert length_segments([5, 5, 5, 5]) is None  # nothing to save
    assert length_segments([40, 1, 1, 1]) is None  # too little to repay a second pass
    saved = len(needed) * (max(needed) + 1) - work
    assert length_segments(needed, min_saving=saved) is not None
    assert length_segments(needed, min_saving=saved + 1) is None


@pytest.mark.parametrize("amx", [True, False])
def test_segments_must_save_more_under_autocast_on_amx(monkeypatch, amx):
    """AMX's bf16 matmuls make a saved position cheaper, not a segment: under autocast on
    such a CPU a segmented pass must save more positions; on a CPU with AVX512-BF16 only
    it must not (there bf16 gains too little)."""
    monkeypatch.setattr(logprobs_module, "cpu_has_amx", lambda: amx)
    cpu = torch.device("cpu")
    assert segment_saving(cpu) == MIN_SEGMENT_SAVING
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = MIN_SEGMENT_SAVING_AUTOCAST if amx else MIN_SEGMENT_SAVING
        assert segment_saving(cpu) == expected
    assert MIN_SEGMENT_SAVING_AUTOCAST > MIN_SEGMENT_SAVING
    needed = [64] + [8] * 10  # saves 571 positions, between the two thresholds
    assert length_segments(needed, MIN_SEGMENT_SAVING) is not None
    assert length_segments(needed, MIN_SEGMENT_SAVING_AUTOCAST) is None


class RenamedCacheLlama(LlamaModel):
    """LlamaModel with the signature of transformers >= 5.24, where the key/value cache
    argument is named `cache` (`past_key_values` warns there and goes in 5.40)."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None,
                use_cache=None, **kwargs):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids, past_key_values=cache,
                               use_cache=use_cache, **kwargs)


def test_the_cache_goes_in_under_the_decoders_own_argument_name(model):
    """Whichever name the installed transformers uses, the shared prompt's cache is
    filled and reused: the renamed-argument decoder gives the same log-probs."""
    renamed = LlamaForCausalLM(model.config).eval()
    renamed.load_state_dict(model.state_dict())
    renamed.model.__class__ = RenamedCacheLlama
    g = torch.Generator().manual_seed(7)
    prompt_ids = torch.randint(1, VOCAB, (2, 5), generator=g)
    prompt_mask = torch.ones_like(prompt_ids)
    completion_ids = torch.randint(1, VOCAB, (4, 3), generator=g)
    completion_mask = torch.ones_like(completion_ids)
    index = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        want = shared_prompt_logprobs(model, prompt_ids, prompt_mask, completion_ids,
                                      completion_mask, index).logprobs
        got = shared_prompt_logprobs(renamed, prompt_ids, prompt_mask, completion_ids,
                                     completion_mask, index).logprobs
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
