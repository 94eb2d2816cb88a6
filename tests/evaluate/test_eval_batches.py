"""An evaluation's completions do not depend on its batch size, and records made when
they did (every batch of 16 prompts seeded with the evaluation's seed + its first index)
are the same evaluations today.

A tiny real Llama in fp32 on CPU, the real sampler and scorer, run folders on disk.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from maspo.data import Example, render_prompt
from maspo.evaluate import (
    EvalSettings,
    eval_settings,
    problem_seeds,
    same_settings,
    sample_and_score,
)
from maspo.rollout import LocalSampler, SamplingSettings
from maspo.rollout.sampler import rows_that_fit
from maspo.run import RunDir
from maspo.testing import tiny_model, tiny_tokenizer
from maspo.trainer import _same_key

PROBLEMS = [Example(prompt=f"What is {a} + {b}?", answer=str(a + b), reward="arithmetic")
            for a in range(6) for b in range(6)][:37]  # 37: three seed blocks, the last short
SEED = 1_000_003


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    model = tiny_model(tokenizer, seed=5).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # (tied) peaked enough that completions end early
    return model


def settings(batch: int | None) -> EvalSettings:
    return eval_settings(None, n=2, seed=SEED, max_new_tokens=6, temperature=0.9,
                         prompts_per_batch=batch)


def completions(model, tokenizer, batch: int | None) -> list[str]:
    results = sample_and_score(model, tokenizer, PROBLEMS, settings(batch))
    return [text for r in results for text in r.completions]


def test_the_batch_size_does_not_change_the_completions(model, tokenizer):
    by_default = completions(model, tokenizer, None)
    assert len(set(by_default)) > 10  # sampled, not one string repeated
    for batch in (1, 5, 16, 40):
        assert completions(model, tokenizer, batch) == by_default, batch


def test_the_seeds_are_those_of_the_16_prompt_batches_of_before(model, tokenizer):
    """Before, batch b (prompts 16b .. 16b + 15) was one call seeded with seed + 16b."""
    engine = LocalSampler(model, tokenizer, settings(None).sampling)
    before = []
    for start in range(0, len(PROBLEMS), 16):
        prompts = [render_prompt(tokenizer, ex.prompt, None, True)
                   for ex in PROBLEMS[start:start + 16]]
        before += engine.generate(prompts, 2, seed=SEED + start).texts
    assert completions(model, tokenizer, None) == before
    assert problem_seeds(SEED, 16, 2) == problem_seeds(SEED + 16, 0, 2)  # the rule itself
    assert problem_seeds(SEED, 15, 2)[1] == problem_seeds(SEED + 16, 0, 1)[0]


@pytest.mark.parametrize(("n", "batch", "prompts"), [(1, None, 128), (4, None, 32),
                                                     (8, None, 16), (200, None, 1),
                                                     (4, 5, 5)])
def test_by_default_a_call_samples_128_completions(n, batch, prompts):
    sampling = SamplingSettings(max_new_tokens=4)
    assert EvalSettings(sampling, n=n, prompts_per_batch=batch).batch_prompts() == prompts
    assert EvalSettings(sampling, n=n, prompts_per_batch=batch).batch_prompts(
        100) == prompts  # only 100 rows would keep the cache small: 128 still


@pytest.mark.parametrize(("n", "fit", "prompts"), [(1, 489, 489), (1, 2000, 512),
                                                   (4, 489, 122), (8, 300, 37),
                                                   (1000, 489, 1)])
def test_more_completions_a_call_while_the_cache_stays_small(n, fit, prompts):
    """Up to 512 completions a call while they keep the cache within 2^15 positions (the
    study's 256 held-out prompts of 51 tokens, 16 new: 489 rows fit, one call)."""
    sampling = SamplingSettings(max_new_tokens=16)
    assert EvalSettings(sampling, n=n).batch_prompts(fit) == prompts


def test_rows_that_fit_count_the_longest_prompt_and_the_length_cap(tokenizer):
    prompts = ["1 2 3", "1 2 3 4 5 6 7"]
    longest = max(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    assert longest >= 7
    assert rows_that_fit(tokenizer, prompts, 9) == 2**15 // (longest + 9)


def test_an_evaluation_calls_the_sampler_with_the_default_for_its_prompts(
        model, tokenizer, monkeypatch):
    calls = []
    generate = LocalSampler.generate

    def counted(self, prompts, n, *, seed):
        calls.append(len(prompts))
        return generate(self, prompts, n, seed=seed)

    monkeypatch.setattr(LocalSampler, "generate", counted)
    problems = PROBLEMS * 8  # 288 short prompts, 6 new tokens, n = 2
    rendered = [render_prompt(tokenizer, ex.prompt, None, True) for ex in problems]
    per_call = min(512, rows_that_fit(tokenizer, rendered, 6)) // 2
    assert 64 < per_call < len(problems)  # more than 128 completions a call, not all
    sample_and_score(model, tokenizer, problems, settings(None))
    assert calls == [per_call, len(problems) - per_call]


def test_a_record_names_no_batch_size_and_old_records_at_16_still_match():
    wanted = settings(64).record()
    assert "prompts_per_batch" not in wanted and wanted == settings(None).record()
    assert same_settings({**wanted, "prompts_per_batch": 16}, wanted)
    assert not same_settings({**wanted, "prompts_per_batch": 8}, wanted)  # other seeds then
    assert not same_settings({**wanted, "temperature": 1.0}, wanted)
    assert not same_settings({**wanted, "prompts_per_batch": 16, "n": 4}, wanted)


def test_a_final_evaluation_recorded_at_16_prompts_a_batch_is_reused(tmp_path):
    """A comparison run again over committed run folders reads their final evaluations
    back instead of asking for the model they did not keep."""
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    wanted = settings(None).record()
    saved = {"settings": {**wanted, "prompts_per_batch": 16}, "correct": [[True, False]],
             "answers": [["3", "4"]]}
    run.final_eval.write_text(json.dumps(saved))
    assert run.read_final_eval(wanted) == saved
    run.final_eval.write_text(json.dumps({**saved, "settings": {**wanted,
                                                                "prompts_per_batch": 4}}))
    assert run.read_final_eval(wanted) is None


def test_a_shared_step0_evaluation_recorded_at_16_prompts_a_batch_is_reused():
    key = {"model": {"path": "m"}, "seed": 3, "eval": settings(None).record(),
           "precision": "fp32", "device": "cpu"}
    old = {**key, "eval": {**key["eval"], "prompts_per_batch": 16}}
    assert _same_key(old, key)
    assert not _same_key({**old, "seed": 4}, key)
    assert not _same_key({**key, "eval": dataclasses.replace(
        settings(None), n=3).record()}, key)
