"""The first update scores its own rows for pi_old: the old pass skips them, and nothing
else changes (``maspo.update.deferred_rows``, ``OldPolicyStats.fill``)."""

from __future__ import annotations

import pytest
import torch

from maspo.config import load_config
from maspo.rollout import SamplingSettings, sample
from maspo.run import prepare_run_dir
from maspo.step_log import update_metrics
from maspo.testing import tiny_overrides
from maspo.trainer import Trainer
from maspo.update import (
    UpdateSettings,
    active_rows,
    deferred_rows,
    minibatches,
    old_policy_stats,
    policy_update,
    scoring_order,
)

SEED = 5
SETTINGS = {"optim.updates_per_step": 2, "optim.micro_batch_size": 3,
            "rollout.temperature": 0.8}


def _trainer(tiny_model_dir, out, **extra) -> Trainer:
    config = load_config(None, tiny_overrides(tiny_model_dir, out, **{**SETTINGS, **extra}))
    return Trainer(config, prepare_run_dir(config, out, resume=False))


def _rollout(trainer: Trainer):
    parts = trainer.parts
    return sample(parts.model, parts.tokenizer, parts.render(parts.splits.heldout[:4]), 4,
                  SamplingSettings(max_new_tokens=8, temperature=0.8), seed=3)


ADVANTAGES = torch.tensor([1.0, -1.0, 0.0, 0.5, -0.5, 0.0, 2.0, -2.0,
                           0.0, 0.0, 0.0, 0.0, 0.3, -0.3, 1.5, -1.5])  # (B,) a tied group


@pytest.mark.parametrize("kl", [0.0, 0.05])
def test_first_update_fills_in_the_old_statistics_of_its_rows_bit_for_bit(tiny_model_dir,
                                                                          tmp_path, kl):
    """Two identical learners on one rollout: one scores every row before updating, the
    other leaves the first update's rows to it. The old pass of the second computes no
    policy statistic of those rows; after the K updates both hold the same old log-probs
    and entropies, the same reference log-probs, the same metrics and the same weights,
    bit for bit."""
    extra = {"loss.kl_coef": kl}
    whole = _trainer(tiny_model_dir, tmp_path / "whole", **extra)
    lazy = _trainer(tiny_model_dir, tmp_path / "lazy", **extra)
    rollout = _rollout(whole)
    settings = whole.update_settings
    assert settings.defer_first
    order = scoring_order(rollout, ADVANTAGES, settings, SEED)
    deferred = deferred_rows(rollout, ADVANTAGES, settings, SEED)
    first = active_rows(rollout, minibatches(rollout, settings, SEED)[0], ADVANTAGES, settings)
    assert sorted(torch.nonzero(deferred).squeeze(-1).tolist()) == sorted(first.tolist())
    assert 0 < int(deferred.sum()) < len(deferred)

    full = old_policy_stats(whole.learner, rollout, settings, order)
    part = old_policy_stats(lazy.learner, rollout, settings, order, deferred)
    mask = rollout.completion_mask
    assert torch.equal(part.logprobs[~deferred], full.logprobs[~deferred])
    assert torch.equal(part.entropy[~deferred], full.entropy[~deferred])
    assert not part.logprobs[deferred].any() and not part.entropy[deferred].any()  # not run
    assert (full.logprobs[deferred][mask[deferred]] < 0).all()
    if kl:
        assert torch.equal(part.ref_logprobs, full.ref_logprobs)  # every row, as before

    results = [policy_update(t.learner, rollout, old, ADVANTAGES, settings, seed=SEED,
                             bad_streak=0, step=1)
               for t, old in ((whole, full), (lazy, part))]
    assert not part.deferred.any()
    assert torch.equal(part.logprobs, full.logprobs)
    assert torch.equal(part.entropy, full.entropy)
    metrics = [update_metrics(r) for r in results]
    assert metrics[0] == metrics[1]
    first_tokens = results[1].tokens[0].log_ratio
    assert len(first_tokens) and not first_tokens.any()  # the first update's ratios: exactly 1
    for (name, p), q in zip(whole.parts.model.named_parameters(),
                            lazy.parts.model.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_rows_deferred_to_anything_but_the_first_update_are_refused(tiny_model_dir, tmp_path):
    """Statistics of the old policy cannot be filled in once it has moved: rows deferred
    outside the first update stop the update before its optimizer step; a scoring
    micro-batch that mixes deferred rows with others is refused too."""
    trainer = _trainer(tiny_model_dir, tmp_path / "run")
    rollout = _rollout(trainer)
    settings = trainer.update_settings
    order = scoring_order(rollout, ADVANTAGES, settings, SEED)
    second = active_rows(rollout, minibatches(rollout, settings, SEED)[1], ADVANTAGES,
                         settings)
    wrong = torch.zeros(len(ADVANTAGES), dtype=torch.bool)
    wrong[second] = True
    old = old_policy_stats(trainer.learner, rollout, settings, order, wrong)
    before = {k: v.clone() for k, v in trainer.parts.model.state_dict().items()}
    with pytest.raises(RuntimeError, match="left rows deferred to it unscored"):
        policy_update(trainer.learner, rollout, old, ADVANTAGES, settings, seed=SEED,
                      bad_streak=0, step=1)
    for key, value in trainer.parts.model.state_dict().items():
        assert torch.equal(value, before[key]), key

    mixed = torch.zeros(len(ADVANTAGES), dtype=torch.bool)
    mixed[order[0][0]] = True  # one row of a micro-batch of three
    with pytest.raises(ValueError, match="mixes deferred rows"):
        old_policy_stats(trainer.learner, rollout, settings, order, mixed)
    with pytest.raises(ValueError, match="scoring order"):
        old_policy_stats(trainer.learner, rollout, settings, None, mixed)


def test_entropy_shaped_advantages_score_every_row_first(tiny_model_dir, tmp_path):
    """Entropy-shaped advantages read pi_old's entropies before any update, so with them
    nothing is deferred; otherwise a step's old pass skips the first update's rows."""
    shaped = _trainer(tiny_model_dir, tmp_path / "shaped", **{"loss.entropy_advantage": "true"})
    rollout = _rollout(shaped)
    assert not shaped.update_settings.defer_first
    assert deferred_rows(rollout, ADVANTAGES, shaped.update_settings, SEED) is None
    plain = UpdateSettings.of(_trainer(tiny_model_dir, tmp_path / "plain").config)
    assert plain.defer_first
