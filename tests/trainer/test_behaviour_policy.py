"""pi_old is exactly the policy that is trained: dropout is off for the old, new and reference
log-probs, and the k3 KL term stays finite for an extreme token."""

from __future__ import annotations

import json

import pytest
import torch

from maspo.config import load_config
from maspo.rollout import SamplingSettings, sample
from maspo.run import prepare_run_dir
from maspo.testing import save_dropout_model, tiny_overrides
from maspo.trainer import Trainer, train
from maspo.update import micro_loss, old_policy_stats


@pytest.fixture(scope="module")
def dropout_model_dir(tmp_path_factory):
    """A tiny GPT-2-style model whose config has dropout 0.1 everywhere."""
    return save_dropout_model(tmp_path_factory.mktemp("gpt2") / "model")


def test_dropout_model_with_one_update_per_rollout_has_ratio_exactly_one(dropout_model_dir,
                                                                         tmp_path):
    # Before any update of a rollout the policy is pi_old: ratio 1 on every token, and the
    # reference (a copy of the initial policy) agrees with it at step 1: KL exactly 0.
    out = tmp_path / "run"
    overrides = tiny_overrides(dropout_model_dir, out, **{
        "train.steps": 2, "train.save_every": 0, "optim.updates_per_step": 1,
        "optim.micro_batch_size": 8, "loss.kl_coef": 0.1})
    train(load_config(None, overrides), progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "obj/ratio_max" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["obj/ratio_max"] == 1.0 for r in steps), [r["obj/ratio_max"] for r in steps]
    assert steps[0]["obj/kl_ref"] == 0.0
    assert steps[0]["grad_norm"] > 0


def test_an_extreme_reference_token_does_not_make_the_update_non_finite(tiny_model_dir,
                                                                         tmp_path):
    config = load_config(None, tiny_overrides(tiny_model_dir, tmp_path / "kl",
                                              **{"loss.kl_coef": 0.1}))
    trainer = Trainer(config, prepare_run_dir(config, tmp_path / "kl", resume=False))
    prompts = trainer.parts.render(trainer.parts.splits.heldout[:2])
    rollout = sample(trainer.parts.model, trainer.parts.tokenizer, prompts, 4,
                     SamplingSettings(max_new_tokens=6, temperature=1.0), seed=3)
    old = old_policy_stats(trainer.learner, rollout, trainer.update_settings)  # (B, T) each
    mask = rollout.completion_mask
    first = mask[0].nonzero()[0, 0]
    old.ref_logprobs[0, first] = old.logprobs[0, first] + 200.0  # exp(200) overflows float32
    counts = {"num_tokens": mask.sum(), "num_seqs": mask.shape[0], "norm_len": 6}
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5])
    micro = micro_loss(trainer.parts.model, rollout, torch.arange(8), old, adv, counts,
                       trainer.update_settings)
    micro.loss.backward()
    assert torch.isfinite(micro.loss)
    assert all(torch.isfinite(p.grad).all() for p in trainer.learner.params
               if p.grad is not None)
    assert 0 < micro.metrics["kl_ref"][0] < float("inf")
