"""Prompt groups of a rollout: which carry a learning signal, and dynamic sampling.

A group is the G completions of one prompt. When its G rewards are all equal it is
*tied*: every group estimator gives it advantage 0, so it teaches nothing to a policy
gradient. Dynamic sampling (DAPO, arXiv 2503.14476, Sec. 3.3; verl's
``algorithm.filter_groups``) keeps drawing batches of P prompts until P untied groups are
found, and trains on those alone.

Deviations from the paper: the number of draws per step is bounded (``max_draws``); at
the bound the step trains on the untied groups found so far (fewer than P), or the run
stops, as the caller chooses. Extra untied groups of the last draw are dropped in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from maspo.data.example import Example
from maspo.rollout.engine import Rollout
from maspo.scoring import Scores


def tied_groups(rewards: Tensor, group_size: int) -> Tensor:
    """(P,) True where a group's rewards (B,) are all equal."""
    grouped = rewards.reshape(-1, group_size)  # (P, G)
    return (grouped == grouped[:, :1]).all(-1)


@dataclass
class Drawn:
    """Prompts, their completions and scores, rows grouped by prompt (B = P * G)."""

    examples: list[Example]  # (P,)
    rollout: Rollout
    scores: Scores

    @property
    def rewards(self) -> Tensor:
        return torch.tensor(self.scores.reward, dtype=torch.float32)  # (B,)

    def groups(self, keep: list[int]) -> Drawn:
        """Only the groups ``keep`` (indices among the P prompts), in that order."""
        g = self.rollout.group_size
        rows = [p * g + j for p in keep for j in range(g)]
        return Drawn([self.examples[p] for p in keep], select_rows(self.rollout, rows),
                     select_scores(self.scores, rows))


@dataclass(frozen=True)
class DrawStats:
    """What dynamic sampling did in one step."""

    draws: int  # batches of P prompts drawn
    groups: int  # groups drawn in all (draws x P)
    tied: int  # of those, groups with all rewards equal
    kept: int  # untied groups trained on (P, or fewer at the bound)
    # over every completion drawn (tied groups included): what the policy achieves on the
    # training stream, where the kept groups' reward is biased towards the middle
    reward_drawn: float  # mean reward
    accuracy_drawn: float  # share correct


def draw_untied(draw: Callable[[int], Drawn], prompts: int, max_draws: int
                ) -> tuple[Drawn | None, DrawStats]:
    """Call ``draw(0)``, ``draw(1)``, ... (each P prompts) until ``prompts`` untied groups
    are found or ``max_draws`` draws are made; returns those groups (None if none) and the
    counts."""
    found: list[Drawn] = []
    kept = groups = tied = draws = 0
    rewards, correct = [], []
    while kept < prompts and draws < max_draws:
        drawn = draw(draws)
        draws += 1
        rewards += drawn.scores.reward
        correct += drawn.scores.correct
        is_tied = tied_groups(drawn.rewards, drawn.rollout.group_size)  # (P,)
        groups += len(is_tied)
        tied += int(is_tied.sum())
        untied = [p for p, t in enumerate(is_tied.tolist()) if not t][:prompts - kept]
        if untied:
            found.append(drawn.groups(untied))
            kept += len(untied)
    stats = DrawStats(draws=draws, groups=groups, tied=tied, kept=kept,
                      reward_drawn=sum(rewards) / max(len(rewards), 1),
                      accuracy_drawn=sum(correct) / max(len(correct), 1))
    return (concat_drawn(found) if found else None), stats


# ---------------------------------------------------------------------------------------
# Selecting and joining rows.


def select_scores(scores: Scores, rows: list[int]) -> Scores:
    return Scores(reward=[scores.reward[i] for i in rows],
                  correct=[scores.correct[i] for i in rows],
                  task_reward=[scores.task_reward[i] for i in rows],
                  parts={k: [v[i] for i in rows] for k, v in scores.parts.items()})


def select_rows(rollout: Rollout, rows: list[int]) -> Rollout:
    """The rollout restricted to ``rows`` (whole groups, in order)."""
    index = torch.tensor(rows, dtype=torch.long, device=rollout.input_ids.device)
    return Rollout(input_ids=rollout.input_ids[index],
                   attention_mask=rollout.attention_mask[index],
                   completion_mask=rollout.completion_mask[index],
                   prompt_len=rollout.prompt_len, texts=[rollout.texts[i] for i in rows],
                   truncated=rollout.truncated[index], group_size=rollout.group_size,
                   sampling_logprobs=rollout.sampling_logprobs[index])


def concat_drawn(parts: list[Drawn]) -> Drawn:
    """Draws joined in order: prompts re-padded on the left to the longest, completions
    on the right to the longest (pads are masked out, as in any rollout)."""
    if len(parts) == 1:
        return parts[0]
    s = max(p.rollout.prompt_len for p in parts)
    t = max(p.rollout.completion_mask.shape[1] for p in parts)

    def pad(x: Tensor, prompt_len: int) -> Tensor:  # (b, S_i + T_i) -> (b, s + t)
        return torch.nn.functional.pad(x, (s - prompt_len, t - (x.shape[1] - prompt_len)))

    rollouts = [p.rollout for p in parts]
    rows = [r.completion_mask.shape[1] for r in rollouts]
    rollout = Rollout(
        input_ids=torch.cat([pad(r.input_ids, r.prompt_len) for r in rollouts]),
        attention_mask=torch.cat([pad(r.attention_mask, r.prompt_len) for r in rollouts]),
        completion_mask=torch.cat([torch.nn.functional.pad(r.completion_mask, (0, t - w))
                                   for r, w in zip(rollouts, rows, strict=True)]),
        prompt_len=s, texts=[text for r in rollouts for text in r.texts],
        truncated=torch.cat([r.truncated for r in rollouts]),
        group_size=rollouts[0].group_size,
        sampling_logprobs=torch.cat([torch.nn.functional.pad(r.sampling_logprobs, (0, t - w))
                                     for r, w in zip(rollouts, rows, strict=True)]))
    scores = [p.scores for p in parts]
    return Drawn([ex for p in parts for ex in p.examples], rollout, Scores(
        reward=[v for sc in scores for v in sc.reward],
        correct=[v for sc in scores for v in sc.correct],
        task_reward=[v for sc in scores for v in sc.task_reward],
        parts={k: [v for sc in scores for v in sc.parts[k]] for k in scores[0].parts}))
