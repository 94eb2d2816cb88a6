"""Prompt groups of a rollout: which carry a learning signal, and dynamic sampling.

A group is the G completions of one prompt. When its G rewards are all equal it is
*tied*: every group estimator gives it advantage 0, so it teaches nothing to a policy
gradient. Dynamic sampling (DAPO, arXiv 2503.14476, Sec. 3.3; verl's
``algorithm.filter_groups``) keeps drawing batches of P prompts until P untied groups are
found, and trains on those alone.

Deviations from the paper: the number of draws per step is bounded (``max_draws``); at
the bound the step trains on the untied groups found so far (fewer than P), or the run
stops, as the caller chooses. Extra untied groups of the last draw are dropped in order.

Several draws can be sampled in one call (``batches_ahead``), as verl's DAPO recipe
samples more prompts a round than it trains on: a decode step reads every weight once
whatever its rows, so 4 draws of the study's 64 rows cost 11.2 CPU-s in one call against
15.4 in four. What is kept is what drawing one batch at a time keeps: draw i's prompts
and noise depend on i alone, draws are taken in order, and those after the one that
completes the step are dropped.
"""

from __future__ import annotations

import math
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

    draws: int  # batches of P prompts drawn (those taken in order until the step had P)
    groups: int  # groups drawn in all (draws x P)
    tied: int  # of those, groups with all rewards equal
    kept: int  # untied groups trained on (P, or fewer at the bound)
    # over every completion drawn (tied groups included): what the policy achieves on the
    # training stream, where the kept groups' reward is biased towards the middle
    reward_drawn: float  # mean reward
    accuracy_drawn: float  # share correct
    sampled: int = 0  # batches sampled: ``draws`` and those sampled ahead but not needed

    @property
    def untied_rate(self) -> float | None:
        """The share of drawn groups that were untied (None when none was drawn)."""
        return (self.groups - self.tied) / self.groups if self.groups else None


def batches_ahead(missing: int, per_batch: int, untied_rate: float | None, left: int) -> int:
    """How many batches of ``per_batch`` prompts to sample in one call: as many as should
    hold the ``missing`` untied groups at ``untied_rate`` (the share untied so far this
    step, else the last step's), at least 1 and at most the ``left`` the bound allows;
    1 while no rate is known, all ``left`` at a rate of 0."""
    if untied_rate is None:
        return 1
    if untied_rate <= 0:
        return left
    return max(1, min(left, math.ceil(missing / (per_batch * untied_rate))))


def draw_untied(draw: Callable[[int, int], list[Drawn]], prompts: int, max_draws: int,
                untied_rate: float | None = None) -> tuple[Drawn | None, DrawStats]:
    """Draw batches of ``prompts`` prompts until ``prompts`` untied groups are found or
    ``max_draws`` are drawn; returns those groups (None if none) and the counts.

    ``draw(first, count)`` samples batches ``first`` .. ``first + count - 1`` in one call;
    ``count`` is ``batches_ahead`` at the untied rate seen so far this step, else
    ``untied_rate`` (the last step's). Batches are taken in order until the step has its
    groups, so the result is that of ``count`` = 1 throughout; the batches after are
    counted in ``DrawStats.sampled`` alone.
    """
    found: list[Drawn] = []
    kept = groups = tied = draws = sampled = 0
    rewards, correct = [], []
    while kept < prompts and draws < max_draws:
        rate = (groups - tied) / groups if groups else untied_rate
        count = batches_ahead(prompts - kept, prompts, rate, max_draws - draws)
        batches = draw(draws, count)
        sampled += count
        for drawn in batches:
            if kept >= prompts:
                break  # sampled ahead, not needed
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
                      accuracy_drawn=sum(correct) / max(len(correct), 1), sampled=sampled)
    return (concat_drawn(found) if found else None), stats


def split_drawn(drawn: Drawn, batches: int) -> list[Drawn]:
    """``drawn`` (``batches`` batches sampled in one call) as the batches it holds, each
    cut to its own padding: its rows as a call of its prompts alone would return them."""
    per = len(drawn.examples) // batches
    if batches == 1:
        return [drawn]
    return [trimmed(drawn.groups(list(range(b * per, (b + 1) * per))))
            for b in range(batches)]


def trimmed(drawn: Drawn) -> Drawn:
    """``drawn`` without the columns padding alone fills in all its rows: prompts padded
    on the left to its longest prompt, completions on the right to its longest."""
    r = drawn.rollout
    pad = int((r.attention_mask[:, :r.prompt_len] == 0).sum(-1).min())  # left pad shared
    width = int(r.completion_mask.sum(-1).max()) if len(r.texts) else 0
    end = r.prompt_len + width
    return Drawn(drawn.examples, Rollout(
        input_ids=r.input_ids[:, pad:end], attention_mask=r.attention_mask[:, pad:end],
        completion_mask=r.completion_mask[:, :width], prompt_len=r.prompt_len - pad,
        texts=r.texts, truncated=r.truncated, group_size=r.group_size,
        sampling_logprobs=r.sampling_logprobs[:, :width]), drawn.scores)


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
