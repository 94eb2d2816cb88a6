"""Adaptive entropy control: an entropy bonus whose coefficient follows a target entropy.

Skywork-OR1 (arXiv 2505.22312, Sec. 3.2.4 "adaptive entropy control"), as TRL's
``GRPOConfig(use_adaptive_entropy=True)`` runs it: the loss gets ``- alpha * H`` with

    alpha_k = c_k * 1[e_{k-1} <= target]                  (applied in update k)
    c_{k+1} = clip(c_k + delta, lo, hi)  if e_k <= target
              clip(c_k - delta, lo, hi)  otherwise

where e_k is the mean token entropy (nats) of update k's tokens under the policy being
updated and c_0 is ``loss.entropy_coef``. The bonus acts only while the entropy is at or
below the target, and the longer it stays there the stronger it pushes; above the target
the coefficient decays back. Before the first measurement the bonus is off.

Deviations from the paper: as TRL, the gate and the coefficient of an update come from
the entropy measured in the previous update (the paper gates on the current batch's) and
the coefficient moves after every optimizer update, not every training step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EntropyTarget:
    """The controller's settings (``loss.entropy_target`` and its bounds)."""

    target: float  # mean token entropy (nats) below which the bonus acts
    delta: float  # how far the coefficient moves per optimizer update
    coef_min: float  # the coefficient's bounds
    coef_max: float


@dataclass(frozen=True)
class EntropyCoef:
    """The entropy bonus's state between updates (checkpointed by the trainer)."""

    coef: float  # c: the coefficient (fixed unless a target moves it)
    measured: float | None = None  # e of the last update (None: no update measured yet)

    def applied(self, control: EntropyTarget | None) -> float:
        """The coefficient the next update applies: c, gated on the last measurement
        when a target controls it."""
        if control is None:
            return self.coef
        return self.coef if self.measured is not None and self.measured <= control.target else 0.0

    def after_update(self, control: EntropyTarget | None, entropy: float) -> EntropyCoef:
        """The state after an update whose tokens had mean entropy ``entropy``."""
        if control is None:
            return self
        if entropy <= control.target:
            coef = min(self.coef + control.delta, control.coef_max)
        else:
            coef = max(self.coef - control.delta, control.coef_min)
        return EntropyCoef(coef, entropy)
