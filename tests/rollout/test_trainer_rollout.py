"""The trainer's rollouts are scored under the distribution they were sampled from."""

from __future__ import annotations

import pytest
import torch

from maspo.config import load_config
from maspo.errors import UserError
from maspo.run import prepare_run_dir
from maspo.testing import tiny_overrides
from maspo.trainer import Trainer, TrainState


def _trainer(tiny_model_dir, out, **extra) -> Trainer:
    config = load_config(None, tiny_overrides(tiny_model_dir, out, **extra))
    return Trainer(config, prepare_run_dir(config, out, resume=False))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_first_update_has_ratio_exactly_one(tiny_model_dir, tmp_path, precision):
    """One update per rollout: the policy that sampled is the one updated, so every ratio
    is exactly 1 (old log-probs and the update's log-probs agree to the bit), also with
    micro-batches that group rows differently from the old-log-prob pass."""
    trainer = _trainer(tiny_model_dir, tmp_path / precision, **{
        "optim.updates_per_step": 1, "optim.micro_batch_size": 3,
        "rollout.prompts_per_step": 3, "train.precision": precision,
        "rollout.temperature": 0.8})
    stream = trainer.splits.train_stream()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer.train_step(1, TrainState(), stream).record
    assert record["obj/ratio_max"] == 1.0
    assert record["obj/ratio_mean"] == 1.0
    assert record["grad_norm"] > 0
    moved = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert moved  # the update happened
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert all(s.dtype == torch.float32 for state in trainer.learner.optimizer.state.values()
               for s in state.values() if torch.is_tensor(s) and s.dim())


def test_steps_are_seeded_by_step_not_by_history(tiny_model_dir, tmp_path):
    """Step 2's rollout depends only on (seed, step) and the weights: a trainer that
    starts at step 2 with the same weights samples the same completions."""
    first = _trainer(tiny_model_dir, tmp_path / "a")
    second = _trainer(tiny_model_dir, tmp_path / "b")
    prompts = first.render(first.splits.heldout[:2])
    torch.manual_seed(99)  # whatever the global RNG holds
    a = first.sampler.generate(prompts, 4, seed=first.step_seed(2))
    b = second.sampler.generate(prompts, 4, seed=second.step_seed(2))
    assert torch.equal(a.input_ids, b.input_ids)
    assert not torch.equal(a.input_ids,
                           first.sampler.generate(prompts, 4, seed=first.step_seed(3)).input_ids)


@pytest.mark.parametrize(("override", "culprit"), [
    ("rollout.top_p=0.9", "'rollout.top_p'"),
    ("train.precision=fp16", "'train.precision'"),
])
def test_settings_that_would_break_exactness_are_refused(override, culprit):
    with pytest.raises(UserError, match=culprit):
        load_config(None, [override])
