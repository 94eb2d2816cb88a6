"""MaspoGRPOTrainer on the real TRL 1.16: training, parity with TRL's losses, config checks."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from integration_support import require

pytestmark = [pytest.mark.integration, pytest.mark.trl]

trl = require("trl")
from datasets import Dataset  # noqa: E402  (after the skip above)
from trl import GRPOConfig, GRPOTrainer  # noqa: E402
from trl_tiny import liked_chars, tiny_model, tiny_tokenizer  # noqa: E402

from maspo.integrations.trl import MaspoGRPOTrainer, OnPolicyWarning  # noqa: E402


def grpo_args(tmp_path, **overrides) -> GRPOConfig:
    settings = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
                    max_completion_length=8, num_iterations=2, max_steps=2, learning_rate=1e-2,
                    logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                    seed=0, disable_tqdm=True)
    settings.update(overrides)
    return GRPOConfig(**settings)


def make_trainer(cls, args, model=None, **kwargs):
    dataset = Dataset.from_dict({"prompt": ["ab", "cd", "ef", "gh"] * 2})
    model = model if model is not None else tiny_model(f"{args.output_dir}/tiny")
    return cls(model, liked_chars, args,
               train_dataset=dataset, processing_class=tiny_tokenizer(), **kwargs)


def test_two_training_steps_reuse_the_rollout_and_log_maspo_metrics(tmp_path):
    trainer = make_trainer(MaspoGRPOTrainer, grpo_args(tmp_path), objective="maspo",
                           objective_params={"alpha": 0.5})
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()

    steps = [h for h in trainer.state.log_history if "maspo/ratio_mean" in h]
    assert len(steps) == 2
    first, second = steps
    assert first["maspo/ratio_max"] == pytest.approx(1.0)  # sampled by this very policy
    assert second["maspo/ratio_max"] > 1.0  # num_iterations=2: same rollout, updated policy
    assert second["maspo/gate_frac"] > 0  # so MASPO's gate acts on the second step
    assert {"maspo/w_mean", "maspo/grad_util", "maspo/sigma_mean", "entropy"} <= set(second)
    after = list(trainer.model.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))


def parity_inputs(model, seed=0, batch=6, prompt_len=3, completion_len=7, beta=0.0):
    """A hand-made TRL batch: ragged completions, off-policy old log-probs, mixed advantages."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    prompt_ids = torch.randint(3, vocab, (batch, prompt_len), generator=g)
    completion_ids = torch.randint(3, vocab, (batch, completion_len), generator=g)
    lengths = torch.tensor([7, 5, 1, 7, 3, 6])
    completion_mask = (torch.arange(completion_len)[None, :] < lengths[:, None]).long()
    with torch.no_grad():
        logits = model(torch.cat([prompt_ids, completion_ids], 1)).logits[:, prompt_len - 1:-1]
        logps = torch.log_softmax(logits, -1).gather(-1, completion_ids[..., None])[..., 0]
    inputs = {
        "prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids, "completion_mask": completion_mask,
        "advantages": torch.tensor([1.2, -0.7, 0.4, -1.5, 0.9, -0.2]),
        "old_per_token_logps": logps + 0.5 * torch.randn(logps.shape, generator=g),
        "num_items_in_batch": completion_mask.sum() * 2,  # this micro-batch and one more
    }
    if beta:
        inputs["ref_per_token_logps"] = logps + 0.2 * torch.randn(logps.shape, generator=g)
    return inputs


def loss_and_grads(trainer, inputs):
    trainer.model.train()
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = 2  # set by Trainer's loop; here by hand
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]


def assert_same(ours, theirs):
    assert torch.allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-7), (ours[0], theirs[0])
    for a, b in zip(ours[1], theirs[1], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


# (TRL's GRPOConfig settings, our objective, its parameters, our GRPOConfig settings)
PARITY = [
    *[({"loss_type": lt, "epsilon_high": 0.28, "beta": 0.04}, "grpo",
       {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": None}, {"loss_type": lt, "beta": 0.04})
      for lt in ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")],
    ({"loss_type": "cispo", "epsilon_high": 2.0}, "cispo", {"clip_high": 1.0},
     {"loss_type": "dapo"}),
    ({"loss_type": "sapo"}, "sapo", {"tau_pos": 1.0, "tau_neg": 1.05}, {"loss_type": "grpo"}),
]


@pytest.mark.parametrize("trl_settings, objective, params, our_settings", PARITY,
                         ids=[f"{p[0]['loss_type']}-{p[1]}" for p in PARITY])
def test_maspo_objective_matches_trl_loss_type_on_the_same_batch(
        tmp_path, trl_settings, objective, params, our_settings):
    model = tiny_model(tmp_path / "tiny")
    common = {"gradient_accumulation_steps": 2, "num_iterations": 2}
    theirs = make_trainer(GRPOTrainer, grpo_args(tmp_path, **common, **trl_settings),
                          model=copy.deepcopy(model))
    ours = make_trainer(MaspoGRPOTrainer, grpo_args(tmp_path, **common, **our_settings),
                        model=copy.deepcopy(model), objective=objective, objective_params=params)
    inputs = parity_inputs(model, beta=trl_settings.get("beta", 0.0))
    assert_same(loss_and_grads(ours, inputs), loss_and_grads(theirs, inputs))


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_policy_loss_is_logged_as_trl_logs_it_with_an_entropy_bonus(tmp_path, loss_type):
    model = tiny_model(tmp_path / "tiny")
    common = {"gradient_accumulation_steps": 2, "num_iterations": 2, "entropy_coef": 0.05,
              "loss_type": loss_type}
    theirs = make_trainer(GRPOTrainer, grpo_args(tmp_path, **common, epsilon_high=0.28),
                          model=copy.deepcopy(model))
    ours = make_trainer(MaspoGRPOTrainer, grpo_args(tmp_path, **common),
                        model=copy.deepcopy(model), objective="grpo",
                        objective_params={"clip_low": 0.2, "clip_high": 0.28, "dual_clip": None})
    inputs = parity_inputs(model)
    assert_same(loss_and_grads(ours, inputs), loss_and_grads(theirs, inputs))
    logged = [t._metrics["train"]["policy_loss"] for t in (ours, theirs)]
    assert len(logged[0]) == len(logged[1]) == 1
    assert logged[0][0] == pytest.approx(logged[1][0], rel=1e-5)


def test_fully_on_policy_configuration_warns_and_names_the_fix(tmp_path):
    with pytest.warns(OnPolicyWarning, match="num_iterations > 1"):
        make_trainer(MaspoGRPOTrainer, grpo_args(tmp_path, num_iterations=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OnPolicyWarning)
        make_trainer(MaspoGRPOTrainer, grpo_args(tmp_path, num_iterations=2))


@pytest.mark.parametrize("kwargs, culprit", [
    ({"objective": "masp"}, "masp"),
    ({"objective_params": {"alhpa": 0.1}}, "alhpa"),
    ({"args_overrides": {"loss_type": "cispo"}}, "objective='cispo'"),
    ({"args_overrides": {"importance_sampling_level": "sequence"}}, "gspo"),
])
def test_bad_settings_fail_before_the_model_loads(tmp_path, kwargs, culprit):
    kwargs = dict(kwargs)
    args = grpo_args(tmp_path, **kwargs.pop("args_overrides", {}))
    with pytest.raises(ValueError, match=culprit):  # a model path that would fail to load
        MaspoGRPOTrainer(str(tmp_path / "no-such-model"), liked_chars, args, **kwargs)


def test_ignored_trl_clip_setting_is_named_in_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="epsilon_high=0.28 is ignored"):
        make_trainer(MaspoGRPOTrainer, grpo_args(tmp_path, epsilon_high=0.28), objective="dgpo")


GRPO_AS_TRL = {"clip_low": 0.2, "clip_high": 0.28, "dual_clip": None}  # TRL's grpo clip


def test_adaptive_entropy_run_matches_trl_bit_for_bit(tmp_path):
    """A whole run (sampling, K updates, the controller moving both ways) of TRL's
    GRPOTrainer and of MaspoGRPOTrainer with objective grpo: same coefficients, same weights."""
    from transformers import set_seed

    model = tiny_model(tmp_path / "tiny")
    # the starting entropy (~3.78 nats) is above the target, later ones below it
    common = {"gradient_accumulation_steps": 2, "num_iterations": 2, "max_steps": 3,
              "use_adaptive_entropy": True, "entropy_target": 3.775,
              "entropy_coef_delta": 0.05, "loss_type": "grpo"}
    theirs = make_trainer(GRPOTrainer, grpo_args(tmp_path / "trl", **common, epsilon_high=0.28),
                          model=copy.deepcopy(model))
    ours = make_trainer(MaspoGRPOTrainer, grpo_args(tmp_path / "maspo", **common),
                        model=copy.deepcopy(model), objective="grpo",
                        objective_params=GRPO_AS_TRL)
    for trainer in (theirs, ours):
        set_seed(0)  # each run samples from the same generator state
        trainer.train()
    coefs = [[h["entropy_coef"] for h in t.state.log_history if "entropy_coef" in h]
             for t in (theirs, ours)]
    assert coefs[0] == coefs[1] == pytest.approx([0.0, 0.05, 0.1])  # down (clipped), up, up
    for a, b in zip(theirs.model.parameters(), ours.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_adaptive_entropy_rides_on_any_objective(tmp_path):
    args = grpo_args(tmp_path, gradient_accumulation_steps=2, use_adaptive_entropy=True,
                     entropy_target=10.0, entropy_coef_delta=0.02,  # far above: it rises
                     save_strategy="steps", save_steps=2)
    trainer = make_trainer(MaspoGRPOTrainer, args, objective="maspo")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    steps = [h for h in trainer.state.log_history if "entropy_coef" in h]
    assert [h["entropy_coef"] for h in steps] == pytest.approx([0.02, 0.04])
    assert all("maspo/w_mean" in h for h in steps)
    saved = json.loads((tmp_path / "checkpoint-2" / "entropy_ctrl_state.json").read_text())
    assert saved["entropy_coef"] == trainer.entropy_coef == steps[-1]["entropy_coef"]
    assert 0 < saved["last_world_entropy"] < 10.0  # TRL's checkpoint keeps the controller
    assert any(not torch.equal(b, a) for b, a in zip(before, trainer.model.parameters()))
