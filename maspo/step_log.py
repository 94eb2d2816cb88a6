"""What a training step logs: phase times, what the rollout looked like, dynamic
sampling's counts, what the update measured (its loss, gradient norm, the objective's
metrics, the importance ratios it met) and the completions it saves."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from maspo.rollout.groups import Drawn, DrawStats
from maspo.update import Metrics, TokenRecord, UpdateResult

RATIO_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # logged per advantage sign (ratio/<sign>/qNN)
RATIO_RANGE = (0.5, 2.0)  # ratio/<sign>/outside: fraction of tokens whose ratio leaves it
TRUST_RANGE = (0.8, 1.25)
"""The trust region of a PPO-style update, 1 - 0.2 to 1 / (1 - 0.2): ``ratio/outside_trust``
and the gradient-kept probe (``maspo.probes``) count the tokens whose ratio leaves it."""


class Clock:
    """Phase times of a step: ``lap(name)`` adds the time since the last lap to ``name``.

    On a GPU each lap first waits for the kernels queued so far, so a phase's time is
    its own work rather than the launches it queued.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - self.last
        self.last = now

    def record(self) -> dict[str, float]:
        return {**{f"time/{k}": v for k, v in self.times.items()},
                "time/step": sum(self.times.values())}


def rollout_metrics(drawn: Drawn, advantages: Tensor, entropy: Tensor) -> dict[str, float]:
    """Reward, accuracy, lengths, entropy (old policy, (B, T)) and the share of rows with
    advantage 0 of the rollout a step trained on."""
    rollout, scores, rewards = drawn.rollout, drawn.scores, drawn.rewards
    mask = rollout.completion_mask
    lengths = mask.sum(-1).float()
    out = {
        "reward": rewards.mean().item(),
        "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "accuracy": sum(scores.correct) / len(scores.correct),
        "response_length": lengths.mean().item(),
        "truncated_frac": rollout.truncated.float().mean().item(),
        "entropy": ((entropy * mask).sum() / mask.sum().clamp(min=1)).item(),
        "zero_adv_frac": (advantages.reshape(len(rewards), -1) == 0).all(-1)
        .float().mean().item(),
    }
    for name, value in scores.parts.items():
        out[f"reward_{name}"] = sum(value) / len(value)
    return out


def draw_metrics(stats: DrawStats) -> dict[str, float]:
    """``dynamic/*``: draws made, draws sampled (those and any sampled ahead in the same
    call but not needed), untied groups kept, share of drawn groups that were tied, and
    the reward and accuracy of every completion drawn (``reward`` and ``accuracy`` are
    those of the kept groups, which filtering pulls towards the middle)."""
    return {"dynamic/draws": stats.draws, "dynamic/draws_sampled": stats.sampled,
            "dynamic/groups_kept": stats.kept,
            "dynamic/tied_frac": stats.tied / stats.groups,
            "dynamic/reward_drawn": stats.reward_drawn,
            "dynamic/accuracy_drawn": stats.accuracy_drawn}


def saved_rows(prompts: int, group_size: int, count: int) -> list[int]:
    """``count`` rollout rows, the first completion of every prompt first, then the
    second, ...: a fixed, seed-free choice that covers as many prompts as it can."""
    total = prompts * group_size
    return [(k % prompts) * group_size + (k // prompts) for k in range(min(count, total))]


def saved_completions(step: int, drawn: Drawn, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` completions of the step, with their prompt, reward and verdict."""
    rollout, scores, g = drawn.rollout, drawn.scores, drawn.rollout.group_size
    lengths = rollout.completion_mask.sum(-1).float()
    return [{"step": step, "prompt": drawn.examples[i // g].prompt,
             "answer": drawn.examples[i // g].answer, "completion": rollout.texts[i],
             "reward": scores.reward[i], "correct": scores.correct[i],
             "truncated": bool(rollout.truncated[i]), "tokens": int(lengths[i].item())}
            for i in saved_rows(len(drawn.examples), g, count)]


def update_metrics(result: UpdateResult) -> dict[str, float]:
    """``obj/*`` (each objective metric over the step's tokens), ``loss`` and ``grad_norm``
    (means over the updates made), ``skipped_updates`` and the ``ratio/*`` statistics."""
    totals: dict[str, float] = {}
    weights: dict[str, float] = {}
    for metrics in result.metrics:
        _add_metrics(totals, weights, metrics)
    # a group no token fell into this step (e.g. no head token with A < 0) is omitted
    out = {f"obj/{k}": totals[k] / weights[k] for k in totals if weights[k]}
    losses, norms = result.losses, result.grad_norms
    out["loss"] = sum(losses) / len(losses) if losses else 0.0
    out["grad_norm"] = sum(norms) / len(norms) if norms else 0.0
    out["skipped_updates"] = result.skipped
    out.update(ratio_quantiles({sign: [signed(t, sign) for t in result.tokens]
                                for sign in ("pos", "neg")}))
    moved = result.tokens[1:]  # after the first update the policy has moved
    if sum(int((t.advantage != 0).sum()) for t in moved):
        ratio = torch.cat([t.log_ratio[t.advantage != 0] for t in moved]).double().exp()
        low, high = TRUST_RANGE
        out["ratio/outside_trust"] = ((ratio < low) | (ratio > high)).double().mean().item()
    if result.entropy_control:  # the adaptive coefficient after the step's last update
        out["entropy_coef"] = result.entropy.coef
    return out


def signed(tokens: TokenRecord, sign: str) -> Tensor:
    """(N,) log-ratios of the tokens with a positive (``pos``) or negative (``neg``) advantage."""
    return tokens.log_ratio[tokens.advantage > 0 if sign == "pos" else tokens.advantage < 0]


def _add_metrics(totals: dict[str, float], weights: dict[str, float], metrics: Metrics) -> None:
    """Fold one micro-batch's metrics into running sums: a mean over ``count`` tokens is
    combined exactly across micro-batches, a maximum (count None) by max."""
    for key, (value, count) in metrics.items():
        if count is None:
            totals[key] = max(totals.get(key, -math.inf), value)
            weights[key] = 1.0
        else:
            totals[key] = totals.get(key, 0.0) + value * count
            weights[key] = weights.get(key, 0.0) + count


def ratio_quantiles(log_ratios: dict[str, Sequence[Tensor]]) -> dict[str, float]:
    """``ratio/<sign>/qNN``, ``min``, ``max``, ``outside`` of the token importance ratios
    r = pi / pi_old met in a step's updates, per advantage sign (pos: A > 0, neg: A < 0)."""
    out: dict[str, float] = {}
    low, high = RATIO_RANGE
    for sign, chunks in log_ratios.items():
        chunks = [c for c in chunks if len(c)]
        if not chunks:
            continue
        ratio = torch.cat(list(chunks)).double().exp()  # (N,) every token with this sign
        values = torch.quantile(ratio, torch.tensor(RATIO_QUANTILES, dtype=torch.float64))
        for q, value in zip(RATIO_QUANTILES, values.tolist(), strict=True):
            out[f"ratio/{sign}/q{round(q * 100):02d}"] = value
        out[f"ratio/{sign}/min"] = ratio.min().item()
        out[f"ratio/{sign}/max"] = ratio.max().item()
        out[f"ratio/{sign}/outside"] = ((ratio < low) | (ratio > high)).double().mean().item()
    return out
