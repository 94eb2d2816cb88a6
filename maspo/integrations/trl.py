"""TRL's GRPOTrainer with any maspo objective: ``MaspoGRPOTrainer(..., objective="maspo")``.

TRL 1.16 computes the per-token log-probs, old log-probs, advantages, rollout importance
ratios and KL; this subclass replaces only the surrogate: the per-token loss comes from
``maspo.losses.policy_loss(objective, ...)``, then TRL's own masks, importance ratios and KL
term are applied and the result is reduced with TRL's normalisation for ``args.loss_type``
(via ``maspo.losses.aggregate``):

    loss_type   normalisation                                   aggregate mode
    grpo        per-completion token mean, mean over completions seq-mean-token-mean
    bnpo        token mean over the local batch                 token-mean
    dr_grpo     sum / (completions * max_completion_length)     seq-mean-token-sum-norm
    luspo       per-completion token sum, mean over completions seq-mean-token-sum
    dapo        sum / tokens of the whole accumulated batch     token-mean (global count)

``loss_type`` therefore only picks the normalisation; TRL's own objectives ``cispo``,
``sapo`` and ``vespo`` are not normalisations (use ``objective="cispo"`` / ``"sapo"``).
maspo's metrics are logged as ``<objective>/<metric>``, and ``policy_loss`` as TRL logs it (the
policy term alone, when an entropy bonus is on). Log-probs come from TRL's own
``_get_per_token_logps_and_entropies``, i.e. TRL's fused LM-head path. The entropy bonus,
fixed or adaptive (``use_adaptive_entropy=True``: ``maspo.entropy_control``, TRL's
controller), is TRL's: the mean entropy of the trained tokens, on top of any objective;
the adaptive coefficient is logged as ``entropy_coef`` and saved with TRL's checkpoints.

Deviations from TRL's GRPOTrainer: the objective takes its clip bounds from
``objective_params`` (``args.epsilon``, ``epsilon_high`` and ``delta`` are ignored, with a
warning when set); ``importance_sampling_level="sequence"`` (use ``objective="gspo"``) is
rejected.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from trl import GRPOConfig, GRPOTrainer

from maspo.entropy_control import EntropyCoef, EntropyTarget
from maspo.losses import aggregate, make_params, policy_loss

# TRL loss_type -> how the per-token loss is reduced (see the module docstring).
NORMALISATIONS = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
    "luspo": "seq-mean-token-sum",
    "dapo": "token-mean",
}
# TRL objectives that are not normalisations, and the maspo setting that replaces each.
TRL_OBJECTIVES = {"cispo": "objective='cispo', loss_type='dapo'",
                  "sapo": "objective='sapo', loss_type='grpo'",
                  "vespo": "another objective (maspo has no VESPO)"}
# Inputs TRL forwards to the model for multimodal batches (GRPOTrainer._compute_loss).
MULTIMODAL_INPUTS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask",
                     "spatial_shapes", "num_tiles", "image_sizes", "token_type_ids",
                     "mm_token_type_ids", "image_position_ids")
# GRPOConfig settings the maspo objectives replace, with TRL's defaults.
IGNORED_TRL_SETTINGS = {"epsilon": 0.2, "epsilon_high": None, "delta": None}


class OnPolicyWarning(UserWarning):
    """The run never leaves the policy that sampled it, so pi / pi_old is always 1."""


def check_config(args: GRPOConfig, objective: str) -> None:
    """Reject GRPOConfig settings this trainer cannot honour; one sentence naming each."""
    if args.loss_type in TRL_OBJECTIVES:
        raise ValueError(f"loss_type={args.loss_type!r} is TRL's own objective, not a "
                         f"normalisation; with MaspoGRPOTrainer use "
                         f"{TRL_OBJECTIVES[args.loss_type]}")
    if args.loss_type not in NORMALISATIONS:
        raise ValueError(f"loss_type={args.loss_type!r} is not supported by MaspoGRPOTrainer; "
                         f"choose one of {', '.join(NORMALISATIONS)}")
    if args.importance_sampling_level != "token":
        raise ValueError(f"importance_sampling_level={args.importance_sampling_level!r} is not "
                         f"supported: maspo objectives form their own ratio (sequence-level: "
                         f"objective='gspo')")
    for key, default in IGNORED_TRL_SETTINGS.items():
        if getattr(args, key) != default:
            warnings.warn(f"GRPOConfig.{key}={getattr(args, key)!r} is ignored by maspo "
                          f"objective {objective!r}; pass its bounds in objective_params",
                          UserWarning, stacklevel=3)


def is_fully_on_policy(args: GRPOConfig) -> bool:
    """True when TRL reuses no rollout across an optimizer step (its own test for old logps)."""
    return args.gradient_accumulation_steps % (args.steps_per_generation * args.num_iterations) == 0


class MaspoGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose policy loss is maspo objective ``objective`` with ``objective_params``.

    Takes every GRPOTrainer argument; ``objective`` is any name in ``maspo.losses.names()``
    and ``objective_params`` its parameters (unknown or invalid ones are rejected before
    the model loads).
    """

    def __init__(self, model, reward_funcs=None, args: GRPOConfig | None = None, *rest: Any,
                 objective: str = "maspo", objective_params: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        params = make_params(objective, dict(objective_params or {}))  # validates
        if args is not None:
            check_config(args, objective)
        super().__init__(model, reward_funcs, args, *rest, **kwargs)  # args=None: TRL's defaults
        self.objective = objective
        self.objective_params = dataclasses.asdict(params)
        a = self.args
        self.entropy_control = EntropyTarget(a.entropy_target, a.entropy_coef_delta,
                                             a.entropy_coef_min, a.entropy_coef_max) if (
            a.use_adaptive_entropy) else None
        self._entropy_window: Tensor | None = None  # (2,) entropy sum, tokens of the window
        if is_fully_on_policy(self.args):
            a = self.args
            warnings.warn(
                f"objective {objective!r} runs fully on-policy: gradient_accumulation_steps="
                f"{a.gradient_accumulation_steps} is a multiple of steps_per_generation * "
                f"num_iterations = {a.steps_per_generation} * {a.num_iterations}, so "
                f"pi/pi_old == 1 on every token and the objective's gates and clips never act "
                f"(it reduces to the plain policy gradient); set num_iterations > 1 (MASPO "
                f"does 4 updates per rollout) so that steps_per_generation * num_iterations > "
                f"gradient_accumulation_steps", OnPolicyWarning, stacklevel=2)

    def _compute_loss(self, model, inputs: dict[str, Any]) -> Tensor:
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], completion_mask], dim=1)
        mask = completion_mask * inputs["tool_mask"] if "tool_mask" in inputs else completion_mask
        logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            **{key: inputs.get(key) for key in MULTIMODAL_INPUTS})  # (B, T) each
        old = inputs.get("old_per_token_logps")  # absent when TRL knows it equals logps
        old = logps.detach() if old is None else old
        advantages = inputs["advantages"]  # (B,) or (B, T)

        out = policy_loss(self.objective, logps, old, advantages, mask.bool(),
                          **self.objective_params)
        per_token = out.per_token  # (B, T)
        if self.off_policy_mask_threshold is not None:
            adv_2d = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
            per_token = per_token * self.get_off_policy_mask(
                adv_2d, logps, inputs.get("sampling_per_token_logps", old), mask,
                self.off_policy_mask_threshold)
        entropy_mask = None
        if self.top_entropy_quantile < 1.0:
            entropy_mask = self.get_high_entropy_mask(entropies, mask,
                                                      1 - self.top_entropy_quantile)
            per_token = per_token * entropy_mask
        if self.use_vllm and self.vllm_importance_sampling_correction:
            per_token = per_token * inputs["importance_sampling_ratio"]
        per_token_kl = None
        if self.beta != 0.0:
            ref = inputs["ref_per_token_logps"]
            per_token_kl = torch.exp(ref - logps) - (ref - logps) - 1  # k3 estimator, as TRL
            if self.args.use_bias_correction_kl:
                per_token_kl = per_token_kl * torch.exp(logps - old)
            per_token = per_token + self.beta * per_token_kl

        mode = "train" if self.model.training else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss, policy_value = self._normalise(per_token, mask, inputs["num_items_in_batch"], mode,
                                             accumulation)
        if self.entropy_coef != 0.0 or self.entropy_control is not None:
            active = mask if entropy_mask is None else mask * entropy_mask
            loss = self._entropy_bonus(loss, entropies, active, mode, accumulation)
            # as TRL: the policy term alone is logged when an entropy bonus is added to it
            self._metrics[mode]["policy_loss"].append(
                self.accelerator.gather(policy_value).nanmean().item())
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss / accumulation
        self._log_loss_metrics(mode, out.metrics, entropies, per_token_kl, mask)
        return loss

    def _entropy_bonus(self, loss: Tensor, entropies: Tensor, active: Tensor, mode: str,
                       accumulation: float) -> Tensor:
        """``loss`` minus TRL's entropy bonus: the mean entropy of the ``active`` tokens
        times the coefficient; an adaptive one moves at each optimizer step's last
        micro-batch, from the entropy of the whole accumulation window on all processes.

        The controller's state lives where TRL keeps it (``entropy_coef`` and the last
        measured entropy, +inf before the first), so TRL's checkpoints save and restore it.
        """
        control = self.entropy_control
        measured = self._last_world_entropy
        state = EntropyCoef(self.entropy_coef, None if math.isinf(measured) else measured)
        entropy = (entropies * active).sum() / active.sum().clamp(min=1.0) / accumulation
        loss = loss - state.applied(control) * entropy
        if mode != "train":
            return loss
        if control is not None:
            window = torch.stack([(entropies * active).sum(), active.sum()]).detach()
            self._entropy_window = window if self._entropy_window is None else (
                self._entropy_window + window)
            if self.accelerator.sync_gradients:  # the optimizer step's last micro-batch
                total = self.accelerator.reduce(self._entropy_window, reduction="sum")
                state = state.after_update(control, (total[0] / total[1].clamp(min=1.0)).item())
                self.entropy_coef, self._last_world_entropy = state.coef, state.measured
                self._entropy_window = None
        if self.accelerator.sync_gradients:
            self._metrics[mode]["entropy_coef"].append(self.entropy_coef)
        return loss

    def _normalise(self, per_token: Tensor, mask: Tensor, num_items: Tensor, mode: str,
                   accumulation: float) -> tuple[Tensor, Tensor]:
        """TRL's reduction for ``loss_type`` (NORMALISATIONS): (the loss scaled for
        accumulation, the detached ``policy_loss`` TRL logs, before that scaling)."""
        agg_mode = NORMALISATIONS[self.loss_type]
        if self.loss_type == "dapo":
            # num_items counts the generation batch's tokens on all processes: TRL divides by
            # this process's share of one accumulation window.
            tokens = num_items.clamp(min=1.0) / self.accelerator.num_processes
            if mode == "train":
                tokens = tokens * accumulation / self.args.steps_per_generation
            loss = aggregate(per_token, mask, agg_mode, num_tokens=tokens)
            return loss, loss.detach()
        # TRL averages over every completion, empty ones included: num_seqs = B.
        loss = aggregate(per_token, mask, agg_mode, num_seqs=per_token.size(0),
                         norm_len=self.max_completion_length)
        return loss / accumulation, loss.detach()

    def _log_loss_metrics(self, mode: str, metrics: Mapping[str, Tensor], entropies: Tensor,
                          per_token_kl: Tensor | None, mask: Tensor) -> None:
        """maspo's metrics averaged over processes (maxima: max), plus TRL's entropy and kl."""
        maskf = mask.float()
        sums = {"entropy": (entropies * maskf).sum()}
        if per_token_kl is not None:
            sums["kl"] = (per_token_kl * maskf).sum()
        totals = self.accelerator.reduce(torch.stack([*sums.values(), maskf.sum()]).detach(),
                                         reduction="sum")
        means = (totals[:-1] / totals[-1].clamp(min=1.0)).tolist()
        for key, value in zip(sums, means):
            self._metrics[mode][key].append(value)
        if not metrics:
            return
        local = torch.stack([v.detach().float().reshape(()) for v in metrics.values()])
        gathered = self.accelerator.gather(local).view(-1, len(metrics))  # (processes, K)
        is_max = torch.tensor([key.endswith("_max") for key in metrics], device=gathered.device)
        values = torch.where(is_max, gathered.max(0).values, gathered.mean(0)).tolist()
        for key, value in zip(metrics, values):
            self._metrics[mode][f"{self.objective}/{key}"].append(value)
