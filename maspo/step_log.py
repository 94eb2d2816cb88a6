"""What a training step logs besides the update's own metrics: phase times, what the
rollout looked like, dynamic sampling's counts, and the completions it saves."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from maspo.rollout.groups import Drawn, DrawStats


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
    """``dynamic/*``: draws made, untied groups kept, share of drawn groups that were tied."""
    return {"dynamic/draws": stats.draws, "dynamic/groups_kept": stats.kept,
            "dynamic/tied_frac": stats.tied / stats.groups}


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
