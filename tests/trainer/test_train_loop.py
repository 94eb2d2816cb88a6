"""The trainer end to end on a tiny real model: files written, weights moved, exact
micro-batching, non-finite updates skipped."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from maspo.cli import main
from maspo.config import load_config
from maspo.parts import TrainState
from maspo.rollout import SamplingSettings, sample
from maspo.run import prepare_run_dir
from maspo.step_log import update_metrics
from maspo.testing import tiny_overrides
from maspo.trainer import Trainer, train
from maspo.update import TrainingStopped, minibatch_backward, old_policy_stats, policy_update

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_tiny_model_trains_two_steps_end_to_end(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    config = load_config(None, tiny_overrides(tiny_model_dir, out))
    summary = train(config, progress=False)

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]
    step = records[1]
    for key in ("reward", "accuracy", "response_length", "entropy", "loss", "grad_norm",
                "obj/gate_frac", "obj/w_mean_tail_pos", "obj/grad_util", "time/generate",
                "time/old_logprobs", "time/update", "lr"):
        assert key in step, key
    assert "eval/accuracy" in records[0] and "eval/accuracy" in records[2]
    assert step["grad_norm"] > 0 and torch.isfinite(torch.tensor(step["loss"]))
    assert summary.eval_accuracy_after is not None

    assert (out / "config.yaml").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000002"
    trained = load_file(out / "checkpoints" / "step-000002" / "weights.safetensors")
    initial = load_file(tiny_model_dir / "model.safetensors")
    moved = [k for k in trained if not torch.equal(trained[k], initial[k])]
    assert moved, "training did not change any weight"
    assert (out / "final_model" / "config.json").is_file()


def _trainer(tiny_model_dir, out, **extra):
    config = load_config(None, tiny_overrides(tiny_model_dir, out, **extra))
    return Trainer(config, prepare_run_dir(config, out, resume=False))


def test_micro_batches_accumulate_exactly_the_whole_mini_batch_gradient(tiny_model_dir,
                                                                         tmp_path):
    whole = _trainer(tiny_model_dir, tmp_path / "a", **{"optim.micro_batch_size": 8})
    split = _trainer(tiny_model_dir, tmp_path / "b", **{"optim.micro_batch_size": 3})
    parts = whole.parts
    rollout = sample(parts.model, parts.tokenizer, parts.render(parts.splits.heldout[:2]), 4,
                     SamplingSettings(max_new_tokens=6, temperature=1.0), seed=3)
    old = old_policy_stats(whole.learner, rollout, whole.update_settings)
    # an older policy than the current one, so the ratio is off 1 and the gate acts
    shifted = old.logprobs + 0.3 * torch.randn(old.logprobs.shape,
                                               generator=torch.Generator().manual_seed(0))
    old.logprobs = torch.where(rollout.completion_mask, shifted, 0.0)
    adv = torch.tensor([1.0, -1.0, 0.5, 0.0, -0.5, 2.0, -2.0, 0.3])
    rows = torch.arange(8)
    losses, metrics = [], []
    for t in (whole, split):
        grad = minibatch_backward(t.learner, rollout, rows, old, adv, t.update_settings)
        assert grad.active.tolist() == [0, 1, 2, 4, 5, 6, 7]  # the zero-advantage row: skipped
        losses.append(grad.loss)
        gate = [m["gate_frac"] for m in grad.metrics]  # (value, tokens) per micro-batch
        metrics.append(sum(v * n for v, n in gate) / sum(n for _, n in gate))
    assert torch.allclose(losses[0], losses[1], rtol=1e-6)
    assert 0 < metrics[0] < 1 and metrics[0] == pytest.approx(metrics[1])
    for (name, p), q in zip(whole.parts.model.named_parameters(), split.parts.model.parameters(),
                            strict=True):
        assert p.grad is not None and torch.any(p.grad != 0), name
        # equal up to float32 summation order (a wrong normaliser would be off by ~2x)
        scale = p.grad.abs().max()
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5 * scale), name


def test_non_finite_updates_are_skipped_and_repeated_ones_stop_the_run(
        tiny_model_dir, tmp_path, diverging_objective):
    trainer = _trainer(tiny_model_dir, tmp_path / "nan",
                       **{"loss.name": diverging_objective, "optim.max_bad_updates": 3,
                          "optim.updates_per_step": 2})
    before = {k: v.clone() for k, v in trainer.parts.model.state_dict().items()}
    stream, state = trainer.parts.splits.train_stream(), TrainState()
    record = trainer.train_step(1, state, stream).record  # two updates, both skipped
    assert record["skipped_updates"] == 2
    assert (state.bad_streak, state.skipped_updates) == (2, 2)
    with pytest.raises(TrainingStopped, match="3 consecutive"):
        trainer.train_step(2, state, stream)
    for key, value in trainer.parts.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_lora_run_trains_only_adapters_and_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "lora"
    lora = {"model.lora.enabled": "true", "model.lora.rank": 4,
            "model.lora.target_modules": "[q_proj,v_proj]"}
    train(load_config(None, tiny_overrides(tiny_model_dir, out, **lora)), progress=False)
    weights = load_file(out / "checkpoints" / "step-000002" / "weights.safetensors")
    assert weights and all("lora_" in key for key in weights)
    more = tiny_overrides(tiny_model_dir, out, **lora, **{"train.steps": 3})
    summary = train(load_config(None, more), resume=True, progress=False)
    assert summary.steps == 3
    assert (out / "checkpoints" / "step-000003" / "weights.safetensors").is_file()


def test_corrupt_checkpoint_is_named_and_nothing_is_overwritten(tiny_model_dir, tmp_path,
                                                                capsys):
    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, out, **{"train.steps": 1})
    assert main(["train", "--no-progress", *overrides]) == 0
    weights = out / "checkpoints" / "step-000001" / "weights.safetensors"
    weights.write_bytes(b"not a safetensors file")
    metrics = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", "--no-progress", *overrides]) == 2
    err = capsys.readouterr().err
    assert "step-000001" in err and "damaged" in err and err.count("\n") == 1
    assert (out / "metrics.jsonl").read_text() == metrics
    assert weights.read_bytes() == b"not a safetensors file"


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_each_step_saves_its_samples_and_train_prints_some(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *tiny_overrides(tiny_model_dir, out, **{"train.samples_per_step": 5}),
            "--no-progress"]
    assert main(argv) == 0
    samples = _jsonl(out / "samples.jsonl")
    assert [s["step"] for s in samples] == [1] * 5 + [2] * 5
    heldout = _trainer(tiny_model_dir, tmp_path / "x").parts.splits.heldout
    test_prompts = {str(ex.prompt) for ex in heldout}
    for saved in samples:
        assert set(saved) == {"step", "prompt", "answer", "completion", "reward", "correct",
                              "truncated", "tokens"}
        assert saved["prompt"].startswith("What is ") and saved["prompt"] not in test_prompts
        assert 1 <= saved["tokens"] <= 6 and (saved["tokens"] == 6 or not saved["truncated"])
    # one completion of each of the 2 prompts first, then the second of each, ...
    assert samples[0]["prompt"] != samples[1]["prompt"]
    assert samples[0]["prompt"] == samples[2]["prompt"]
    printed = capsys.readouterr().out
    assert "completions of step 2" in printed
    assert repr(samples[5]["completion"]) in printed


def test_truncated_completions_earn_nothing_by_default(tiny_model_dir, tmp_path):
    # 3 tokens: the random tiny model never ends that soon; digit_reward would pay any digit
    extra = {"reward.score_truncated": False, "rollout.max_new_tokens": 3,
             "train.samples_per_step": 8, "train.steps": 1}
    config = load_config(None, tiny_overrides(tiny_model_dir, tmp_path / "cut", **extra))
    train(config, progress=False)
    samples = _jsonl(tmp_path / "cut" / "samples.jsonl")
    assert all(s["truncated"] for s in samples)
    assert all(s["reward"] == 0.0 and not s["correct"] for s in samples)
    assert any(ch.isdigit() for s in samples for ch in s["completion"])  # would have paid
    [step] = [r for r in _jsonl(tmp_path / "cut" / "metrics.jsonl") if r["step"] == 1]
    assert step["reward"] == 0.0 and step["truncated_frac"] == 1.0

    config = load_config(None, tiny_overrides(tiny_model_dir, tmp_path / "paid",
                                              **{**extra, "reward.score_truncated": True}))
    train(config, progress=False)
    paid = _jsonl(tmp_path / "paid" / "samples.jsonl")
    assert [s["completion"] for s in paid] == [s["completion"] for s in samples]
    assert any(s["reward"] > 0 for s in paid)


def test_resume_cuts_samples_back_to_the_checkpoint(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    train(load_config(None, tiny_overrides(tiny_model_dir, out)), progress=False)
    first = _jsonl(out / "samples.jsonl")
    with open(out / "samples.jsonl", "a") as f:  # what a run killed after step 2 left behind
        f.write(json.dumps({**first[-1], "step": 3, "completion": "stale"}) + "\n")
    train(load_config(None, tiny_overrides(tiny_model_dir, out, **{"train.steps": 3})),
          resume=True, progress=False)
    samples = _jsonl(out / "samples.jsonl")
    assert samples[:len(first)] == first
    assert [s["step"] for s in samples[len(first):]] == [3] * (len(samples) - len(first))
    assert "stale" not in [s["completion"] for s in samples]


@pytest.mark.parametrize("updates", [1, 2])
def test_importance_ratio_quantiles_are_logged_per_advantage_sign(tiny_model_dir, tmp_path,
                                                                  updates):
    config = load_config(None, tiny_overrides(tiny_model_dir, tmp_path / "run", **{
        "optim.updates_per_step": updates, "rollout.prompts_per_step": 2}))
    train(config, progress=False)
    steps = [r for r in _jsonl(tmp_path / "run" / "metrics.jsonl") if r["step"] >= 1]
    for record in steps:
        for sign in ("pos", "neg"):
            values = [record[f"ratio/{sign}/{k}"]
                      for k in ("min", "q05", "q25", "q50", "q75", "q95", "max")]
            assert values == sorted(values) and values[0] > 0
            if updates == 1:  # one update per rollout: the policy is the old one, r = 1
                assert values == pytest.approx([1.0] * 7, abs=1e-5)
                assert record[f"ratio/{sign}/outside"] == 0.0
    if updates == 2:  # the second mini-batch meets a moved policy (lr 0.01)
        assert any(r["ratio/pos/max"] > 1.001 or r["ratio/pos/min"] < 0.999 for r in steps)


def test_the_trust_region_share_counts_the_updates_after_the_first(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path / "t", **{"optim.updates_per_step": 2})
    rollout = sample(trainer.parts.model, trainer.parts.tokenizer,
                     trainer.parts.render(trainer.parts.splits.heldout[:2]), 4,
                     SamplingSettings(max_new_tokens=6, temperature=1.0), seed=3)
    old = old_policy_stats(trainer.learner, rollout, trainer.update_settings)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.5, -0.5])
    result = policy_update(trainer.learner, rollout, old, adv, trainer.update_settings,
                           seed=0, bad_streak=0, step=1)
    first, second = result.tokens  # each mini-batch's tokens
    assert torch.all(first.log_ratio[first.weight != 0] == 0)  # r = 1
    ratios = second.log_ratio[second.advantage != 0].exp()
    expected = ((ratios < 0.8) | (ratios > 1.25)).double().mean().item()
    assert 0 < expected < 1  # lr 0.01 moves the tiny model past the region at some tokens
    assert update_metrics(result)["ratio/outside_trust"] == expected
    single = _trainer(tiny_model_dir, tmp_path / "k1", **{"optim.updates_per_step": 1})
    old = old_policy_stats(single.learner, rollout, single.update_settings)
    result = policy_update(single.learner, rollout, old, adv, single.update_settings,
                           seed=0, bad_streak=0, step=1)
    assert "ratio/outside_trust" not in update_metrics(result)  # one update: never moved
