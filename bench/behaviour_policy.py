"""Is pi_old the policy that is trained, and is the ratio computed in a precision that keeps
the gates meaningful? Prints two measurements (issue 8); not a test.

(a) dropout: a tiny GPT-2-style model with every dropout at 0.1 trains one step with one
    update per rollout; ``obj/ratio_max`` of that update must be exactly 1.
(b) precision: verl-style inputs (bf16 ``log_prob``, fp32 ``old_log_prob``) through
    maspo's ``grpo`` and verl's own ``vanilla`` (when verl is importable), and through
    ``maspo``: loss and gradient differences, and MASPO against GRPO on the same inputs.

    PYTHONPATH=$PWD python bench/behaviour_policy.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from maspo.config import load_config
from maspo.losses import aggregate, policy_loss
from maspo.run import RunDir
from maspo.testing import GPT2_DROPOUT, save_dropout_model, tiny_overrides
from maspo.trainer import train


def ratio_max_with_dropout() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_dropout_model(Path(tmp) / "model")
        out = Path(tmp) / "run"
        overrides = tiny_overrides(model_dir, out, **{
            "train.steps": 1, "train.eval_every": 0, "train.save_every": 0,
            "optim.updates_per_step": 1, "optim.micro_batch_size": 8})
        train(load_config(None, overrides), progress=False)
        records = RunDir(out).read_metrics()
        return next(r["obj/ratio_max"] for r in records if "obj/ratio_max" in r)


def verl_inputs(seed: int = 0, b: int = 64, t: int = 256):
    """bf16 log_prob one optimizer step away from fp32 old_log_prob, as verl passes them."""
    g = torch.Generator().manual_seed(seed)
    old = torch.log(torch.rand(b, t, generator=g).clamp(min=1e-6))  # (B, T) fp32
    logp = (old + 0.05 * torch.randn(b, t, generator=g)).clamp(max=0.0).to(torch.bfloat16)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous()  # (B, T) as verl
    mask = torch.ones(b, t, dtype=torch.bool)
    return logp, old, adv, mask


def maspo_loss(name: str, logp, old, adv, mask):
    leaf = logp.detach().clone().requires_grad_(True)
    out = policy_loss(name, leaf, old, adv, mask)
    loss = aggregate(out.per_token, mask)
    loss.backward()
    return loss.detach().double(), leaf.grad.double()


def verl_vanilla(logp, old, adv, mask):
    from verl.trainer.ppo import core_algos
    from verl.workers.config import ActorConfig

    config = ActorConfig(strategy="fsdp", rollout_n=1, ppo_micro_batch_size_per_gpu=1)
    leaf = logp.detach().clone().requires_grad_(True)
    fn = core_algos.get_policy_loss_fn("vanilla")
    loss, _ = fn(old_log_prob=old, log_prob=leaf, advantages=adv, response_mask=mask,
                 loss_agg_mode="token-mean", config=config)
    loss.backward()
    return loss.detach().double(), leaf.grad.double()


def rel(grad, ref) -> float:
    return ((grad - ref).abs().max() / ref.abs().max()).item()


def main() -> None:
    print(f"(a) obj/ratio_max, dropout {GPT2_DROPOUT}, 1 update per rollout: "
          f"{ratio_max_with_dropout()!r}")
    logp, old, adv, mask = verl_inputs()
    grpo_loss, grpo_grad = maspo_loss("grpo", logp, old, adv, mask)
    maspo_value, maspo_grad = maspo_loss("maspo", logp, old, adv, mask)
    ref_loss, ref_grad = maspo_loss("grpo", logp.double(), old.double(), adv.double(), mask)
    print(f"(b) bf16 log_prob + fp32 old_log_prob, B x T = {tuple(logp.shape)}")
    print(f"    maspo grpo  vs fp64 grpo:    |dloss| {abs(grpo_loss - ref_loss).item():.3e}  "
          f"max|dgrad|/max|grad| {rel(grpo_grad, ref_grad):.3e}")
    print(f"    maspo maspo vs maspo grpo:   |dloss| {abs(maspo_value - grpo_loss).item():.3e}  "
          f"max|dgrad|/max|grad| {rel(maspo_grad, grpo_grad):.3e}")
    try:
        vanilla_loss, vanilla_grad = verl_vanilla(logp, old, adv, mask)
    except ImportError as err:
        print(f"    verl vanilla: not importable here ({err})")
        return
    print(f"    maspo grpo  vs verl vanilla: |dloss| {abs(grpo_loss - vanilla_loss).item():.3e}  "
          f"max|dgrad|/max|grad| {rel(grpo_grad, vanilla_grad):.3e}")


if __name__ == "__main__":
    main()
