"""maspo objectives as verl 0.9 policy-loss modes, and the config that carries their parameters.

Loaded by verl itself: ``import verl`` imports every ``verl.plugins`` entry point, and
maspo's (``maspo.integrations.verl_plugin``) imports this module, which registers

- every ``maspo.losses`` objective as a verl policy-loss mode (``loss_mode_for(name)``: the
  objective's own name, or ``maspo_<name>`` where verl already has that name, e.g.
  ``maspo_gspo``: verl's built-ins are never shadowed);
- the ``dr_grpo`` advantage estimator (verl's ``grpo`` and ``rloo`` already equal maspo's).

Each loss adapts verl's ``PolicyLossFn`` call: it computes maspo's per-token loss, multiplies
it by verl's rollout importance weights when given, and reduces it with verl's ``agg_loss``
and the actor's ``global_batch_info`` (global token / sequence counts and DP size), so the
gradient does not depend on the data-parallel size or the micro-batch split.

Hyperparameters travel in ``MaspoPolicyLossConfig`` (``actor.policy_loss._target_``), one
section per objective under ``params``; see docs/integrations.md for the override lines.

Deviations from verl's built-in losses: maspo objectives read their clip bounds from
``policy_loss.params.<objective>``, never from ``actor.clip_ratio*`` (a warning names the
setting when those differ from verl's defaults); BAPO picks its bounds per micro-batch.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from verl.trainer.ppo import core_algos
from verl.workers.config import PolicyLossConfig

from maspo import advantages as maspo_advantages
from maspo.losses import get_spec, make_params, names, policy_loss

logger = logging.getLogger(__name__)

# verl's own policy-loss names, read before we register anything: ours never replace them.
VERL_BUILTIN_LOSSES = frozenset(core_algos.POLICY_LOSS_REGISTRY)
VERL_DEFAULT_CLIPS = {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2,
                      "clip_ratio_c": 3.0}  # ActorConfig's defaults; maspo objectives ignore these


def loss_mode_for(objective: str) -> str:
    """verl ``policy_loss.loss_mode`` under which maspo objective ``objective`` is registered."""
    get_spec(objective)  # unknown names fail here, listing the known ones
    return f"maspo_{objective}" if objective in VERL_BUILTIN_LOSSES else objective


def objective_for(loss_mode: str) -> str | None:
    """The maspo objective behind verl ``loss_mode``, or None if it is not one of ours."""
    for objective in names():
        if loss_mode_for(objective) == loss_mode:
            return objective
    return None


def default_params() -> dict[str, dict[str, Any]]:
    """Every registered objective's parameters at their defaults: {objective: {param: value}}."""
    return {name: dataclasses.asdict(make_params(name, {})) for name in names()}


@dataclass
class MaspoPolicyLossConfig(PolicyLossConfig):
    """verl's PolicyLossConfig plus the parameters of every maspo objective.

    Select it with ``actor_rollout_ref.actor.policy_loss._target_=`` this class's path. Each
    objective reads ``params[<objective>]``; sections given partially are completed with the
    defaults, and unknown objectives or parameters, and a ``loss_mode`` verl has not
    registered, are rejected by name at construction (on the driver, before any model
    loads; verl itself would fail only at the first update).
    """

    params: dict[str, Any] = field(default_factory=default_params)  # {objective: {param: value}}

    def __post_init__(self) -> None:
        check_loss_mode(self.loss_mode)
        given = dict(self.params or {})
        unknown = sorted(set(given) - set(names()))
        if unknown:
            raise ValueError(f"policy_loss.params has unknown objective(s) {', '.join(unknown)}; "
                             f"known objectives: {', '.join(names())}")
        resolved = {}
        for name in names():
            section = given.get(name) or {}
            if not isinstance(section, Mapping):
                raise ValueError(f"policy_loss.params.{name} must be a mapping of parameters, "
                                 f"got {section!r}")
            resolved[name] = dataclasses.asdict(make_params(name, dict(section)))
        object.__setattr__(self, "params", resolved)  # BaseConfig freezes set fields


def check_loss_mode(loss_mode: str) -> None:
    """Raise ValueError unless ``loss_mode`` is a registered verl policy loss (ours or verl's)."""
    known = list(core_algos.POLICY_LOSS_REGISTRY)
    if loss_mode in known:
        return
    close = difflib.get_close_matches(str(loss_mode), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"policy_loss.loss_mode={loss_mode!r} is not a registered verl policy "
                     f"loss{hint}; known modes: {', '.join(known)}")


def _objective_params(config: Any, objective: str) -> dict[str, Any]:
    """The objective's parameters from the actor config (defaults under verl's plain config)."""
    params = getattr(config.policy_loss, "params", None)
    if params is None:  # verl's PolicyLossConfig: the user did not set our _target_
        return {}
    return dict(params[objective])


_warned: set[tuple[str, str]] = set()


def _warn_ignored_clips(config: Any, objective: str) -> None:
    """Warn once per (objective, setting) when an actor.clip_ratio* value would be ignored."""
    for key, default in VERL_DEFAULT_CLIPS.items():
        value = getattr(config, key, default)
        if value is not None and value != default and (objective, key) not in _warned:
            _warned.add((objective, key))
            logger.warning("actor.%s=%s is ignored by maspo objective %r; set its parameters "
                           "with actor.policy_loss.params.%s.<name> instead",
                           key, value, objective, objective)


def _metrics_for_verl(objective: str, metrics: Mapping[str, Tensor]) -> dict[str, float]:
    """maspo's detached scalar metrics as verl's ``actor/...`` floats (one host sync)."""
    if not metrics:
        return {}
    values = torch.stack([v.detach().float().reshape(()) for v in metrics.values()]).tolist()
    return {f"actor/{objective}/{key}": value for key, value in zip(metrics, values)}


def make_verl_policy_loss(objective: str):
    """A verl ``PolicyLossFn`` computing maspo objective ``objective``."""
    get_spec(objective)

    def verl_policy_loss(
        old_log_prob: Tensor,  # (B, T) log pi_old of the response tokens
        log_prob: Tensor,  # (B, T) log pi_theta, carries the gradient
        advantages: Tensor,  # (B, T) token advantages
        response_mask: Tensor,  # (B, T) bool or 0/1
        loss_agg_mode: str = "token-mean",
        config: Any = None,  # verl ActorConfig
        rollout_is_weights: Tensor | None = None,  # (B, T) rollout correction weights
    ) -> tuple[Tensor, dict[str, float]]:
        if config is None:
            raise ValueError(f"verl loss mode {loss_mode_for(objective)!r} needs the actor config")
        _warn_ignored_clips(config, objective)
        out = policy_loss(objective, log_prob, old_log_prob, advantages, response_mask.bool(),
                          **_objective_params(config, objective))
        per_token = out.per_token  # (B, T)
        if rollout_is_weights is not None:
            per_token = per_token * rollout_is_weights
        loss = core_algos.agg_loss(loss_mat=per_token, loss_mask=response_mask,
                                   loss_agg_mode=loss_agg_mode, **config.global_batch_info)
        return loss, _metrics_for_verl(objective, out.metrics)

    verl_policy_loss.__name__ = f"maspo_{objective}_policy_loss"
    verl_policy_loss.__qualname__ = verl_policy_loss.__name__
    verl_policy_loss.__doc__ = f"maspo objective {objective!r} in verl's PolicyLossFn signature."
    return verl_policy_loss


def compute_dr_grpo_outcome_advantage(
    token_level_rewards: Tensor,  # (B, T) reward on the last response token
    response_mask: Tensor,  # (B, T)
    index: np.ndarray,  # (B,) prompt uid of each response; groups need not be contiguous
    config: Any = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Dr. GRPO advantages (maspo.advantages.dr_grpo) per uid group, as verl (advantages, returns).

    verl computes the same values with ``adv_estimator=grpo`` and
    ``norm_adv_by_std_in_grpo=False``; this names it ``dr_grpo``.
    """
    scores = token_level_rewards.sum(dim=-1)  # (B,)
    adv = torch.zeros_like(scores)
    groups: dict[Any, list[int]] = {}
    for row, uid in enumerate(index):
        groups.setdefault(uid, []).append(row)
    with torch.no_grad():
        for rows in groups.values():
            rows_t = torch.tensor(rows, device=scores.device)
            adv[rows_t] = maspo_advantages.dr_grpo(scores[rows_t], group_size=len(rows))
    adv = adv[:, None] * response_mask  # (B, T)
    return adv, adv


def register() -> None:
    """Register every maspo objective and missing estimator with verl (idempotent)."""
    for objective in names():
        core_algos.register_policy_loss(loss_mode_for(objective))(make_verl_policy_loss(objective))
    if "dr_grpo" not in core_algos.ADV_ESTIMATOR_REGISTRY:
        core_algos.register_adv_est("dr_grpo")(compute_dr_grpo_outcome_advantage)


register()
