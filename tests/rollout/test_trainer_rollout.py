"""The trainer's rollouts are scored under the distribution they were sampled from."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from maspo.config import load_config
from maspo.errors import UserError
from maspo.logprobs import decoder_and_head, length_segments
from maspo.parts import TrainState
from maspo.precision import CPU_ATTENTION, FP32_ATTENTION, resolve_precision, weight_cache
from maspo.rollout import Rollout
from maspo.run import prepare_run_dir
from maspo.step_log import update_metrics
from maspo.testing import tiny_overrides
from maspo.trainer import Trainer
from maspo.update import completion_logprobs, old_policy_stats, policy_update, scoring_order


def _trainer(tiny_model_dir, out, **extra) -> Trainer:
    config = load_config(None, tiny_overrides(tiny_model_dir, out, **extra))
    return Trainer(config, prepare_run_dir(config, out, resume=False))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_first_update_has_ratio_exactly_one(tiny_model_dir, tmp_path, precision):
    """One update per rollout: the policy that sampled is the one updated, so every ratio
    is exactly 1 (old log-probs and the update's log-probs agree to the bit), also with
    micro-batches that group rows differently from the old-log-prob pass. Under bf16
    autocast (``auto`` picks it where bf16 is native) weights, gradients and the AdamW
    moments stay fp32."""
    trainer = _trainer(tiny_model_dir, tmp_path / precision, **{
        "optim.updates_per_step": 1, "optim.micro_batch_size": 3,
        "rollout.prompts_per_step": 3, "train.precision": precision,
        "rollout.temperature": 0.8})
    stream = trainer.parts.splits.train_slots()
    before = {k: v.clone() for k, v in trainer.parts.model.state_dict().items()}
    record = trainer.train_step(1, TrainState(), stream).record
    assert record["obj/ratio_max"] == 1.0
    assert record["obj/ratio_mean"] == 1.0
    assert record["grad_norm"] > 0
    model = trainer.parts.model
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert moved  # the update happened
    assert all(p.dtype == torch.float32 for p in trainer.parts.model.parameters())
    assert all(p.grad is None for p in trainer.parts.model.parameters())  # zeroed after the step
    moments = [s for state in trainer.learner.optimizer.state.values()
               for s in state.values() if torch.is_tensor(s) and s.dim()]
    assert moments and all(s.dtype == torch.float32 for s in moments)
    assert trainer.parts.precision_mode == resolve_precision(precision, "cpu")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_first_ratio_is_exactly_one_when_passes_run_in_length_segments(tiny_model_dir,
                                                                       tmp_path, precision):
    """Completions of many lengths: the log-prob passes run in length segments, whose
    kernels round by shape. The old policy scores each row in the micro-batch its update
    will use (``scoring_order``), so the first update's ratios are still exactly 1."""
    trainer = _trainer(tiny_model_dir, tmp_path, **{
        "optim.updates_per_step": 1, "optim.micro_batch_size": 16, "train.precision": precision})
    groups, g, t = 4, 8, 60
    enc = trainer.parts.tokenizer(trainer.parts.render(trainer.parts.splits.heldout[:groups]),
                            return_tensors="pt", padding=True, add_special_tokens=False)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, t // 3, (groups * g,), generator=gen)  # (B,) mostly short,
    lengths[::g] = t  # one per group at the cap
    mask = torch.arange(t) < lengths[:, None]  # (B, T)
    ids = torch.randint(4, len(trainer.parts.tokenizer), mask.shape, generator=gen) * mask
    index = torch.arange(groups).repeat_interleave(g)
    rollout = Rollout(torch.cat([enc["input_ids"][index], ids], 1),
                      torch.cat([enc["attention_mask"][index], mask.long()], 1), mask,
                      enc["input_ids"].shape[1], [""] * len(ids),
                      torch.zeros(len(ids), dtype=torch.bool), g, torch.zeros(mask.shape))
    advantages = torch.linspace(-1.0, 1.0, len(ids))  # (B,) no zero
    settings = trainer.update_settings
    order = scoring_order(rollout, advantages, settings, seed=5)
    assert all(length_segments((lengths[rows] - 1).tolist()) for rows in order)  # all split
    with trainer.parts.precision():
        old = old_policy_stats(trainer.learner, rollout, settings, order)
        update = policy_update(trainer.learner, rollout, old, advantages, settings, seed=5,
                               bad_streak=0, step=1)
    metrics = update_metrics(update)
    assert metrics["obj/ratio_max"] == 1.0
    assert metrics["ratio/pos/min"] == metrics["ratio/neg/max"] == 1.0


def _bf16_trainer(tiny_model_dir, out) -> Trainer:
    return _trainer(tiny_model_dir, out, **{"train.precision": "bf16",
                                           "optim.updates_per_step": 2})


def test_updates_under_bf16_autocast_use_the_updated_weights(tiny_model_dir, tmp_path):
    """Autocast keeps a bf16 copy of each weight for as long as its context lasts; after
    the K updates made inside one context, a pass in that context sees the new weights,
    exactly as a pass in a fresh context does (else the second mini-batch would be scored
    and differentiated at the weights before the first update)."""
    trainer = _bf16_trainer(tiny_model_dir, tmp_path)
    settings = trainer.update_settings
    parts = trainer.parts
    rollout = parts.sampler.generate(parts.render(parts.splits.heldout[:2]), 4, seed=0)
    rows = torch.arange(len(rollout.texts))
    advantages = torch.linspace(-1.0, 1.0, len(rows))  # (B,) every row has a signal
    with trainer.parts.precision():
        old = old_policy_stats(trainer.learner, rollout, settings)
        update = policy_update(trainer.learner, rollout, old, advantages, settings, seed=0,
                               bad_streak=0, step=1)
        inside = completion_logprobs(trainer.parts.model, rollout, rows, settings).logprobs
    with trainer.parts.precision():
        fresh = completion_logprobs(trainer.parts.model, rollout, rows, settings).logprobs
    assert update.skipped == 0
    assert torch.equal(inside, fresh)
    assert not torch.equal(fresh, old.logprobs[:, :fresh.shape[1]])  # the policy moved


class WeightCasts(TorchDispatchMode):
    """Counts the bf16 casts of each of ``weights`` (by storage) made while it is active."""

    def __init__(self, weights: list[torch.Tensor]) -> None:
        super().__init__()
        self.names = {w.data_ptr(): i for i, w in enumerate(weights)}
        self.counts = [0] * len(weights)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16:
            index = self.names.get(args[0].data_ptr())
            if index is not None:
                self.counts[index] += 1
        return func(*args, **kwargs)


def test_bf16_casts_the_weights_once_per_optimizer_step(tiny_model_dir, tmp_path):
    """Within a step, sampling, the old log-probs and the first update's micro-batches
    multiply by one bf16 copy of each weight; each later update casts once, after its
    optimizer step: K casts per step for K updates (not one per pass and mini-batch), and
    the first ratio is still exactly 1 with gradients reaching every weight."""
    trainer = _trainer(tiny_model_dir, tmp_path, **{
        "train.precision": "bf16", "optim.updates_per_step": 2, "optim.micro_batch_size": 2})
    settings = trainer.update_settings
    parts = trainer.parts
    weights = [p for p in parts.model.parameters() if p.dim() == 2]  # every matmul weight
    prompts = parts.render(parts.splits.heldout[:2])
    with WeightCasts(weights) as casts, weight_cache("bf16", "cpu"):
        with parts.precision():
            rollout = parts.sampler.generate(prompts, 4, seed=0)
        advantages = torch.linspace(-1.0, 1.0, len(rollout.texts))  # (B,) all rows learn
        with parts.precision():
            old = old_policy_stats(trainer.learner, rollout, settings)
        with parts.precision():
            update = policy_update(trainer.learner, rollout, old, advantages, settings,
                                   seed=0, bad_streak=0, step=1)
    assert update.skipped == 0
    assert casts.counts == [2] * len(weights)
    first = update.tokens[0].log_ratio  # (N,) the first update's tokens
    assert len(first) and torch.equal(first, torch.zeros_like(first))
    assert all(norm > 0 for norm in update.grad_norms)


def test_bf16_on_cpu_runs_attention_in_fp32(tiny_model_dir, tmp_path):
    """CPU bf16 attention's backward is several times slower than fp32's: under bf16 the
    matmuls are bf16 but attention runs in fp32; an fp32 run keeps transformers' sdpa
    (reading the key/value heads in place, ``maspo.precision.gqa_sdpa``)."""
    bf16 = _bf16_trainer(tiny_model_dir, tmp_path / "a").parts.model
    assert bf16.config._attn_implementation == FP32_ATTENTION
    fp32 = _trainer(tiny_model_dir, tmp_path / "b").parts.model
    assert fp32.config._attn_implementation == CPU_ATTENTION


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_held_out_evaluation_runs_at_the_run_precision(tiny_model_dir, tmp_path, precision):
    """The held-out evaluation samples under the run's precision: every forward pass of
    the policy during it runs under bf16 autocast with ``train.precision=bf16``, and
    under none with fp32."""
    trainer = _trainer(tiny_model_dir, tmp_path, **{"train.precision": precision})
    seen: list[bool] = []
    decoder, _ = decoder_and_head(trainer.parts.model)
    decoder.register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    trainer.evaluate()
    assert seen and set(seen) == {precision == "bf16"}


@pytest.mark.parametrize(("override", "culprit"), [
    ("rollout.top_p=0.9", "'rollout.top_p'"),
    ("train.precision=fp16", "'train.precision'"),
])
def test_settings_that_would_break_exactness_are_refused(override, culprit):
    with pytest.raises(UserError, match=culprit):
        load_config(None, [override])
