"""The rollout contract: what the trainer asks for (`RolloutEngine`) and gets (`Rollout`).

The trainer does not know how completions are made. Today's engine is the in-process
sampler (`maspo.rollout.sampler.LocalSampler`, CPU or GPU); an inference server (vLLM)
would be another class with the same `generate`, plus a weight push after each update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from maspo.config import check_setting


@dataclass
class Rollout:
    """G completions for each of P prompts, rows grouped by prompt (B = P * G)."""

    input_ids: Tensor  # (B, S + T): prompt left-padded to S, completion right-padded to T
    attention_mask: Tensor  # (B, S + T): 0 on every pad
    completion_mask: Tensor  # (B, T) bool: completion tokens up to and including EOS
    prompt_len: int  # S, where completions start
    texts: list[str]  # decoded completions, special tokens removed
    truncated: Tensor  # (B,) bool: hit max_new_tokens without EOS
    group_size: int  # G: rows g * G .. (g + 1) * G - 1 share prompt g
    sampling_logprobs: Tensor  # (B, T) fp32: log-prob of each token as it was drawn

    @property
    def completion_ids(self) -> Tensor:
        return self.input_ids[:, self.prompt_len:]  # (B, T)


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are drawn; every engine honours all of it, and nothing else."""

    max_new_tokens: int  # completion length cap
    temperature: float = 1.0  # tokens are drawn from softmax(logits / temperature)
    top_p: float = 1.0  # nucleus: smallest most-likely set with mass >= top_p, renormalised
    greedy: bool = False  # argmax instead of sampling (temperature and top_p unused)

    def __post_init__(self) -> None:  # (maspo.config.SETTINGS: the ranges)
        check_setting("sampling.max_new_tokens", self.max_new_tokens)
        if not self.greedy:
            check_setting("sampling.temperature", self.temperature)
        check_setting("sampling.top_p", self.top_p)


class RolloutEngine(Protocol):
    """Makes completions; the trainer's only view of sampling."""

    def generate(self, prompts: list[str], n: int, *, seed: int | Sequence[int]) -> Rollout:
        """``n`` completions of each rendered prompt, reproducible for a given ``seed``: one
        number for the call, or one per prompt (its group's own seed)."""
        ...
