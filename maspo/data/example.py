"""One prompt with its verifiable answer: the unit every prompt source yields."""

import dataclasses
from typing import Any

Message = dict[str, str]  # {"role": "user", "content": "..."}
Prompt = str | list[Message]


@dataclasses.dataclass(frozen=True)
class Example:
    """A prompt, its reference answer, the reward that checks it, and extra reward columns."""

    prompt: Prompt  # plain text, or chat messages
    answer: str | tuple[str, ...]  # reference the reward compares against (a tuple: any one)
    reward: str = "math"  # name for `maspo.rewards.load_reward_fn`
    columns: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. numbers, target

    def row(self) -> dict[str, Any]:
        """Flat dict in TRL's dataset shape: prompt, answer, reward and the extra columns."""
        return {**self.columns, "prompt": self.prompt, "answer": self.answer, "reward": self.reward}
