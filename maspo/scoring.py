"""Scoring a batch of completions against their examples: the one path train and eval share.

Each example names its task reward (``Example.reward``: "math", "countdown", or a
"package.module:function"); optional extra reward functions and a weighted format bonus
are added on top. ``correct`` is the task reward alone (a 0/1 verifier for the built-ins),
which is what accuracy, Avg@k and Pass@k count.

Truncated completions (cut at the length cap before their end-of-sequence token) earn
no credit by default: every reward of such a row is 0 and it counts as wrong, whatever
its text says. This is DAPO's overlong filtering (arXiv 2503.14476, Sec. 3.4) taken as a
zero reward rather than a masked row: a cut completion has not finished its answer, and a
score read from it (e.g. the last number so far) rewards the length cap, not the model.
``score_truncated=True`` scores them like complete ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from maspo.data.example import Example
from maspo.rewards.registry import RewardFn, load_reward_fn

CORRECT_THRESHOLD = 0.5  # a task reward above this counts as a correct answer


@dataclass
class Scores:
    reward: list[float]  # total reward per completion
    correct: list[bool]  # task reward > CORRECT_THRESHOLD
    task_reward: list[float]  # the example's own reward, before extras
    parts: dict[str, list[float]] = field(default_factory=dict)  # each extra reward


class Scorer:
    """Looks reward functions up once; scores (examples, completions) in batches."""

    def __init__(self, extra: Sequence[str] = (), format_weight: float = 0.0,
                 score_truncated: bool = False) -> None:
        self._fns: dict[str, RewardFn] = {}
        self.extra = list(extra)
        self.format_weight = format_weight
        self.score_truncated = score_truncated
        for spec in self.extra:
            self._fn(spec)

    def _fn(self, spec: str) -> RewardFn:
        if spec not in self._fns:
            self._fns[spec] = load_reward_fn(spec)
        return self._fns[spec]

    @staticmethod
    def _columns(examples: Sequence[Example]) -> dict[str, list[Any]]:
        keys: dict[str, None] = {}
        for ex in examples:
            keys.update(dict.fromkeys(ex.columns))
        columns = {k: [ex.columns.get(k) for ex in examples] for k in keys}
        columns["answer"] = [ex.answer for ex in examples]
        columns["prompts"] = [ex.prompt for ex in examples]
        return columns

    def score(self, examples: Sequence[Example], completions: Sequence[str],
              truncated: Sequence[bool] | None = None) -> Scores:
        """Score completion i against examples[i]; ``truncated[i]`` (hit the length cap
        without EOS) zeroes every reward of row i unless ``score_truncated``."""
        if truncated is not None and len(truncated) != len(completions):
            raise ValueError(f"got {len(truncated)} truncation flags for "
                             f"{len(completions)} completions")
        task = [0.0] * len(completions)
        by_reward: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            by_reward.setdefault(ex.reward, []).append(i)
        for spec, rows in by_reward.items():
            values = self._fn(spec)([completions[i] for i in rows],
                                    **self._columns([examples[i] for i in rows]))
            for i, v in zip(rows, values, strict=True):
                task[i] = v
        total = list(task)
        parts: dict[str, list[float]] = {}
        specs = list(self.extra) + (["format"] if self.format_weight else [])
        for spec in specs:
            values = self._fn(spec)(list(completions), **self._columns(examples))
            weight = self.format_weight if spec == "format" else 1.0
            parts[spec] = values
            total = [t + weight * v for t, v in zip(total, values, strict=True)]
        if truncated is not None and not self.score_truncated:
            keep = [0.0 if cut else 1.0 for cut in truncated]
            task = [k * v for k, v in zip(keep, task, strict=True)]
            total = [k * v for k, v in zip(keep, total, strict=True)]
            parts = {name: [k * v for k, v in zip(keep, values, strict=True)]
                     for name, values in parts.items()}
        return Scores(reward=total, correct=[t > CORRECT_THRESHOLD for t in task],
                      task_reward=task, parts=parts)
