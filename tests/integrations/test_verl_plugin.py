"""maspo objectives inside verl 0.9: plugin discovery, config, loss/gradient parity, invariance."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from integration_support import require

pytestmark = [pytest.mark.integration, pytest.mark.verl]

verl = require("verl")
from hydra import compose, initialize_config_dir  # noqa: E402  (after the skip above)
from hydra.errors import InstantiationException  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.utils.config import omega_conf_to_dataclass  # noqa: E402

from maspo.advantages import dr_grpo  # noqa: E402
from maspo.losses import aggregate, names, policy_loss  # noqa: E402

TARGET = "maspo.integrations.verl.MaspoPolicyLossConfig"
VERL_CONFIG_DIR = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
VERL_MODES = ["token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum",
              "seq-mean-token-sum-norm"]
SHARED_MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum",
                "seq-mean-token-sum-norm"]  # the modes maspo.losses.aggregate also has


@functools.cache
def composed_actor(overrides: tuple[str, ...]):
    """verl's ppo_trainer.yaml composed by Hydra with our overrides: the actor section."""
    base = [
        f"actor_rollout_ref.actor.policy_loss._target_={TARGET}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.rollout.n=4",
    ]
    with initialize_config_dir(config_dir=VERL_CONFIG_DIR, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=base + list(overrides))
    return cfg.actor_rollout_ref.actor


def actor_config(overrides=()):
    """A fresh real verl FSDPActorConfig, built the way verl's workers build it."""
    return omega_conf_to_dataclass(composed_actor(tuple(overrides)))


def batch(b=8, t=6, seed=0):
    """Old/new log-probs with ratios in every region, mixed-sign advantages, ragged lengths."""
    g = torch.Generator().manual_seed(seed)
    old = torch.log(torch.rand(b, t, generator=g, dtype=torch.float64) * 0.98 + 0.01)
    logp = (old + 0.6 * torch.randn(b, t, generator=g, dtype=torch.float64))
    adv = torch.randn(b, generator=g, dtype=torch.float64)[:, None].expand(b, t).clone()
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]  # (B, T) bool, left-aligned responses
    return logp, old, adv, mask


def set_global_info(config, mask, dp_size=1, loss_scale_factor=None):
    """What verl's ppo_loss writes before calling the policy loss (global mini-batch counts)."""
    config.global_batch_info.update(dp_size=dp_size, batch_num_tokens=int(mask.sum()),
                                    global_batch_size=int(mask.shape[0]),
                                    loss_scale_factor=loss_scale_factor)


def loss_and_grad(fn, logp, old, adv, mask, mode, config, weights=None):
    logp = logp.clone().requires_grad_(True)
    loss, metrics = fn(old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask,
                       loss_agg_mode=mode, config=config, rollout_is_weights=weights)
    loss.backward()
    return loss.detach(), logp.grad, metrics


def test_plain_import_verl_registers_maspo_through_the_entry_point():
    # A fresh interpreter that never imports maspo itself: verl's plugin discovery must.
    script = textwrap.dedent(f"""
        import sys, torch, verl
        from verl.trainer.ppo.core_algos import get_policy_loss_fn
        from verl.utils.config import omega_conf_to_dataclass
        from hydra import compose, initialize_config_dir
        assert "maspo.integrations.verl" in sys.modules
        with initialize_config_dir(config_dir={VERL_CONFIG_DIR!r}, version_base=None):
            cfg = compose(config_name="ppo_trainer", overrides=[
                "actor_rollout_ref.actor.policy_loss._target_={TARGET}",
                "actor_rollout_ref.actor.policy_loss.loss_mode=maspo",
                "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                "actor_rollout_ref.rollout.n=4"])
        actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
        fn = get_policy_loss_fn(actor.policy_loss.loss_mode)
        logp = torch.zeros(2, 3, requires_grad=True)
        loss, metrics = fn(torch.zeros(2, 3) - 0.1, logp, torch.ones(2, 3), torch.ones(2, 3),
                           "token-mean", actor, None)
        loss.backward()
        assert torch.isfinite(logp.grad).all()
        assert metrics and all(k.startswith("actor/maspo/") for k in metrics)
        print("ok", type(actor.policy_loss).__name__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_PLUGINS"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ok MaspoPolicyLossConfig" in run.stdout


def test_a_ray_worker_that_imports_verl_has_the_maspo_loss_modes():
    ray = require("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote
        def registered() -> bool:  # runs in a fresh worker process
            import sys

            from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
            return "dgpo" in POLICY_LOSS_REGISTRY and "maspo.integrations.verl" in sys.modules

        assert ray.get(registered.remote(), timeout=240)
    finally:
        ray.shutdown()


def test_every_objective_is_registered_without_shadowing_verl_builtins():
    from maspo.integrations.verl import VERL_BUILTIN_LOSSES, loss_mode_for, objective_for

    for name in names():
        mode = loss_mode_for(name)
        assert core_algos.get_policy_loss_fn(mode).__name__ == f"maspo_{name}_policy_loss"
        assert objective_for(mode) == name
    for builtin in ("vanilla", "gspo", "sapo", "cispo"):  # verl's own stay verl's
        assert builtin in VERL_BUILTIN_LOSSES
        assert core_algos.get_policy_loss_fn(builtin).__module__ == core_algos.__name__
    assert loss_mode_for("gspo") == "maspo_gspo" and loss_mode_for("dgpo") == "dgpo"


def test_config_overrides_reach_the_objective_and_defaults_fill_the_rest():
    actor = actor_config(["actor_rollout_ref.actor.policy_loss.loss_mode=maspo",
                          "+actor_rollout_ref.actor.policy_loss.params.maspo.alpha=0.5",
                          "+actor_rollout_ref.actor.policy_loss.params.dgpo.n=2"])
    params = actor.policy_loss.params
    assert params["maspo"]["alpha"] == 0.5 and params["maspo"]["sigma_base"] == 1.0
    assert params["dgpo"]["n"] == 2 and params["dgpo"]["m"] == 2.0
    assert set(params) == set(names())

    # The override changes the loss verl computes: equal to maspo.losses with alpha=0.5.
    logp, old, adv, mask = batch()
    set_global_info(actor, mask)
    loss, _, _ = loss_and_grad(core_algos.get_policy_loss_fn("maspo"), logp, old, adv, mask,
                               "token-mean", actor)
    expected = aggregate(policy_loss("maspo", logp, old, adv, mask, alpha=0.5).per_token, mask)
    assert torch.allclose(loss, expected, rtol=1e-12)


@pytest.mark.parametrize("override, culprit", [
    ("+actor_rollout_ref.actor.policy_loss.params.maspo.alhpa=0.5", "alhpa"),
    ("+actor_rollout_ref.actor.policy_loss.params.maspoo.alpha=0.5", "maspoo"),
    ("+actor_rollout_ref.actor.policy_loss.params.maspo.alpha=-1", "alpha"),
])
def test_bad_parameters_are_rejected_by_name_when_the_config_is_built(override, culprit):
    with pytest.raises(InstantiationException, match=culprit):
        actor_config([override])


def test_a_misspelled_loss_mode_fails_when_the_config_is_built_naming_the_known_modes():
    with pytest.raises(InstantiationException) as caught:
        actor_config(["actor_rollout_ref.actor.policy_loss.loss_mode=maspoo"])
    message = str(caught.value)
    assert "loss_mode='maspoo'" in message and "did you mean 'maspo'" in message
    for mode in ("vanilla", "maspo", "dgpo", "maspo_gspo", "gspo"):
        assert mode in message


def test_verl_info_prints_what_verl_sees_and_why_the_plugin_is_missing():
    command = [sys.executable, "-m", "maspo.integrations.verl_info"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"verl: {verl.__version__}" in done.stdout
    assert "maspo plugin: loaded by 'import verl'" in done.stdout
    assert "maspo_gspo (gspo)" in done.stdout and "dr_grpo" in done.stdout
    assert "WARNING: trl" not in done.stdout  # this environment keeps TRL out, as it must
    off = subprocess.run(command, capture_output=True, text=True, check=False,
                         env={**os.environ, "VERL_USE_EXTERNAL_PLUGINS": "none"})
    assert off.returncode == 1
    assert "NOT loaded: VERL_USE_EXTERNAL_PLUGINS=none" in off.stdout


@pytest.mark.parametrize("name", names())
@pytest.mark.parametrize("mode", VERL_MODES)
def test_loss_and_gradient_equal_maspo_losses_plus_verl_agg_loss(name, mode):
    from maspo.integrations.verl import loss_mode_for

    actor = actor_config()
    logp, old, adv, mask = batch()
    weights = torch.rand(mask.shape, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64) + 0.5  # rollout importance weights
    set_global_info(actor, mask, loss_scale_factor=4)
    fn = core_algos.get_policy_loss_fn(loss_mode_for(name))
    loss, grad, metrics = loss_and_grad(fn, logp, old, adv, mask, mode, actor, weights)

    ref_logp = logp.clone().requires_grad_(True)
    out = policy_loss(name, ref_logp, old, adv, mask)
    ref = core_algos.agg_loss(out.per_token * weights, mask, mode, **actor.global_batch_info)
    ref.backward()
    assert torch.allclose(loss, ref.detach(), rtol=1e-12, atol=1e-15)
    assert torch.allclose(grad, ref_logp.grad, rtol=1e-12, atol=1e-15)
    assert set(metrics) == {f"actor/{name}/{k}" for k in out.metrics}
    assert all(isinstance(v, float) for v in metrics.values())
    if mode in SHARED_MODES:  # and verl's reduction is maspo's aggregate with global counts
        ours = aggregate(out.per_token * weights, mask, mode, num_tokens=int(mask.sum()),
                         num_seqs=mask.shape[0], norm_len=4)
        assert torch.allclose(loss, ours.detach(), rtol=1e-12)


@pytest.mark.parametrize("name", ["maspo", "dgpo", "grpo", "gspo"])
@pytest.mark.parametrize("mode", VERL_MODES)
def test_gradient_is_invariant_to_micro_batching_and_data_parallel_size(name, mode):
    from maspo.integrations.verl import loss_mode_for

    fn = core_algos.get_policy_loss_fn(loss_mode_for(name))
    actor = actor_config()
    logp, old, adv, mask = batch(b=8)
    set_global_info(actor, mask, loss_scale_factor=6)
    full_loss, full_grad, _ = loss_and_grad(fn, logp, old, adv, mask, mode, actor)

    # dp_size ranks x micro-batches, with verl's global info; DDP averages rank gradients.
    for dp_size, micro in [(1, 2), (1, 4), (2, 2), (4, 1)]:
        set_global_info(actor, mask, dp_size=dp_size, loss_scale_factor=6)
        grad = torch.zeros_like(logp)
        loss_sum = 0.0
        for rank_rows in torch.arange(8).chunk(dp_size):
            for rows in rank_rows.chunk(len(rank_rows) // micro):
                loss, g, _ = loss_and_grad(fn, logp[rows], old[rows], adv[rows], mask[rows],
                                           mode, actor)
                grad[rows] += g / dp_size
                loss_sum += loss / dp_size
        assert torch.allclose(grad, full_grad, rtol=1e-10, atol=1e-14), (dp_size, micro)
        assert torch.allclose(torch.as_tensor(loss_sum), full_loss, rtol=1e-10)


@pytest.mark.parametrize("mode", VERL_MODES)
def test_verl_vanilla_and_maspo_grpo_agree(mode):
    actor = actor_config()  # verl defaults: clip_ratio 0.2 / 0.2, clip_ratio_c 3.0 = grpo's
    logp, old, adv, mask = batch(seed=3)
    logp = logp.clone()
    logp[0, 0] = old[0, 0] + 1.5  # a negative-advantage token past the dual clip, if A < 0
    adv[0] = -1.0
    set_global_info(actor, mask)
    weights = torch.full(mask.shape, 0.7, dtype=torch.float64)
    vanilla = loss_and_grad(core_algos.get_policy_loss_fn("vanilla"), logp, old, adv, mask,
                            mode, actor, weights)
    ours = loss_and_grad(core_algos.get_policy_loss_fn("grpo"), logp, old, adv, mask, mode,
                         actor, weights)
    assert torch.allclose(vanilla[0], ours[0], rtol=1e-12)
    assert torch.allclose(vanilla[1], ours[1], rtol=1e-12, atol=1e-15)
    assert vanilla[2]["actor/pg_clipfrac_lower"] > 0  # the dual clip did act


def test_ignored_verl_clip_settings_are_named_in_a_warning(caplog):
    actor = actor_config(["actor_rollout_ref.actor.clip_ratio_high=0.28"])
    logp, old, adv, mask = batch()
    set_global_info(actor, mask)
    with caplog.at_level(logging.WARNING, logger="maspo.integrations.verl"):
        loss_and_grad(core_algos.get_policy_loss_fn("dac"), logp, old, adv, mask,
                      "token-mean", actor)
    assert "actor.clip_ratio_high=0.28" in caplog.text
    assert "actor.policy_loss.params.dac" in caplog.text


def test_dr_grpo_estimator_groups_by_uid_like_verl_grpo_without_std():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (12,), generator=g).double()
    rewards[8:12] = 1.0  # a tied group: zero advantage
    uids = np.array([f"p{i // 4}" for i in range(12)], dtype=object)
    perm = torch.randperm(12, generator=g)  # verl may reorder rows (balance_batch)
    mask = torch.ones(12, 5)
    token_rewards = torch.zeros(12, 5, dtype=torch.float64)
    token_rewards[:, -1] = rewards
    fn = core_algos.get_adv_estimator_fn("dr_grpo")
    adv, returns = fn(token_level_rewards=token_rewards[perm], response_mask=mask[perm],
                      index=uids[perm.numpy()])
    assert torch.allclose(adv[:, 0], dr_grpo(rewards, group_size=4)[perm], atol=1e-12)
    verl_adv, _ = core_algos.compute_grpo_outcome_advantage(
        token_rewards[perm], mask[perm], uids[perm.numpy()], norm_adv_by_std_in_grpo=False)
    assert torch.allclose(adv, verl_adv, atol=1e-12)
    assert torch.equal(adv, returns)


# The paper's published MASPO settings per model (sigma_base 1, beta 0.03 each side,
# sigma_high 10, advantage clamp [0.1, 10]; alpha 0.5 for the 1.5B, 0.3 for 7B and 14B).
PAPER_SETTINGS = {"1.5B": (0.5, 1), "7B": (0.3, 2), "14B": (0.3, 4)}  # size: (alpha, TP)


def _script_overrides(**env) -> subprocess.CompletedProcess:
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "verl",
                          "run_maspo_r1_distill.sh")
    return subprocess.run(["bash", script], capture_output=True, text=True,
                          env={**os.environ, "PRINT_OVERRIDES": "1", **env})


@pytest.mark.parametrize("size", list(PAPER_SETTINGS))
def test_example_launch_script_overrides_compose_into_a_valid_verl_config(size):
    from verl.utils.config import validate_config

    printed = _script_overrides(SIZE=size)
    assert printed.returncode == 0, printed.stderr
    with initialize_config_dir(config_dir=VERL_CONFIG_DIR, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=printed.stdout.splitlines())
    validate_config(cfg, use_reference_policy=False, use_critic=False)  # verl's driver check
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert type(actor.policy_loss).__name__ == "MaspoPolicyLossConfig"
    assert actor.policy_loss.loss_mode == "maspo"
    alpha, tp = PAPER_SETTINGS[size]
    assert actor.policy_loss.params["maspo"] == {
        "sigma_base": 1.0, "alpha": alpha, "beta_pos": 0.03, "beta_neg": 0.03,
        "sigma_high": 10.0, "adv_low": 0.1, "adv_high": 10.0, "mass_adaptive": True,
        "risk_control": True}
    assert cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == tp
    assert cfg.actor_rollout_ref.rollout.n == 8
    assert cfg.data.train_batch_size // cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 4
    assert cfg.actor_rollout_ref.model.path == f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{size}"
    assert "hf_model" in actor.checkpoint.save_contents  # the folder `maspo eval` scores


def test_example_launch_script_refuses_a_size_the_paper_did_not_train():
    printed = _script_overrides(SIZE="3B")
    assert printed.returncode == 2 and "SIZE=3B" in printed.stderr and not printed.stdout


def test_verl_worker_loss_ppo_loss_runs_the_configured_objective():
    # verl's engine workers call workers.utils.losses.ppo_loss(config, model_output, data):
    # it fills global_batch_info from the batch, looks up loss_mode and wraps our metrics.
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu
    from verl.utils.metric import Metric
    from verl.workers.utils.losses import ppo_loss

    actor = actor_config(["actor_rollout_ref.actor.policy_loss.loss_mode=dgpo",
                          "+actor_rollout_ref.actor.policy_loss.params.dgpo.n=2"])
    logp, old, adv, mask = batch(b=4, t=5)
    prompt_len, lengths = 3, mask.sum(-1).tolist()
    # The model output is unpadded: one row per token of prompt + response, and the
    # log-prob of response token j sits at position prompt_len - 1 + j of its sequence.
    rows = []
    for i, n in enumerate(lengths):
        seq = torch.zeros(prompt_len + n, dtype=logp.dtype)
        seq[prompt_len - 1:prompt_len - 1 + n] = logp[i, :n]
        rows.append(seq)
    flat = torch.cat(rows).requires_grad_(True)  # (total tokens,)
    b, t = mask.shape
    data = TensorDict({
        "prompts": torch.ones(b, prompt_len, dtype=torch.long),
        "responses": torch.ones(b, t, dtype=torch.long),
        "attention_mask": torch.cat([torch.ones(b, prompt_len, dtype=torch.long),
                                     mask.long()], 1),
        "response_mask": mask.long(), "old_log_probs": old, "advantages": adv,
    }, batch_size=[b])
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=int(mask.sum()) * 2,
                         global_batch_size=2 * b)  # this micro-batch is half the mini-batch
    loss, metrics = ppo_loss(actor, {"log_probs": flat}, data)
    loss.backward()

    ref_logp = logp.clone().requires_grad_(True)
    ref = aggregate(policy_loss("dgpo", ref_logp, old, adv, mask, n=2).per_token, mask,
                    num_tokens=int(mask.sum()) * 2)
    ref.backward()
    assert torch.allclose(loss, ref.detach(), rtol=1e-12)
    per_sequence = flat.grad.split([prompt_len + n for n in lengths])
    grad = torch.stack([torch.nn.functional.pad(g[prompt_len - 1:prompt_len - 1 + n], (0, t - n))
                        for g, n in zip(per_sequence, lengths)])  # back to (B, T)
    assert torch.allclose(grad, ref_logp.grad, rtol=1e-12, atol=1e-15)
    assert isinstance(metrics["actor/dgpo/grad_util"], Metric)
