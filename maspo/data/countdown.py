"""Countdown puzzles: reach a target from given numbers with + - * / (TinyZero, Pan et al.).

Each puzzle is built by combining the drawn numbers at random, so its target is reachable
by construction and the construction is stored as the reference `answer`. Intermediate
results stay positive integers, as in the TV game. Verified by
`maspo.rewards.countdown_reward` (every number used exactly once).
"""

import dataclasses
import random
from typing import ClassVar

from maspo.data.example import Example
from maspo.data.settings import check_int
from maspo.errors import UserError

MAX_NUMBERS = 6  # the TV game's count; more makes expressions long for little gain
MAX_VALUE = 10_000  # keeps targets and products readable in a prompt
CONSTRUCTION_TRIES = 1000  # random combinations tried before settings are called infeasible
PROMPT = (
    "Using the numbers {numbers}, write an arithmetic expression that equals {target}. "
    "Use each number exactly once, with + - * / and parentheses. "
    "Put the final expression in \\boxed{{}}."
)


def _combine(rng: random.Random, a: tuple[int, str], b: tuple[int, str]) -> tuple[int, str]:
    """A random positive-integer combination of two (value, expression) pairs."""
    (x, ex), (y, ey) = (a, b) if a[0] >= b[0] else (b, a)  # x >= y, so x - y >= 0
    choices = [(x + y, "+"), (x * y, "*")]
    if x > y:
        choices.append((x - y, "-"))
    if x % y == 0:
        choices.append((x // y, "/"))
    value, op = rng.choice(choices)
    return value, f"({ex} {op} {ey})"


@dataclasses.dataclass(frozen=True)
class CountdownTask:
    """Random Countdown puzzles; every setting is checked on construction."""

    numbers: int = 4  # how many numbers per puzzle
    max_number: int = 25  # numbers are drawn from 1..max_number
    max_target: int = 100  # targets lie in 1..max_target
    name: ClassVar[str] = "countdown"

    def __post_init__(self) -> None:
        check_int(self.name, "numbers", self.numbers, 2, MAX_NUMBERS)
        check_int(self.name, "max_number", self.max_number, 1, MAX_VALUE)
        check_int(self.name, "max_target", self.max_target, 1, MAX_VALUE)

    def sample(self, rng: random.Random) -> Example:
        """One puzzle drawn from `rng`."""
        for _ in range(CONSTRUCTION_TRIES):
            numbers = [rng.randint(1, self.max_number) for _ in range(self.numbers)]
            pool = [(n, str(n)) for n in numbers]
            while len(pool) > 1:
                rng.shuffle(pool)
                pool.append(_combine(rng, pool.pop(), pool.pop()))
            target, expression = pool[0]
            if 1 <= target <= self.max_target:
                numbers.sort()  # one canonical prompt per puzzle, so splits compare prompts
                return Example(
                    prompt=PROMPT.format(numbers=numbers, target=target),
                    answer=expression[1:-1],
                    reward="countdown",
                    columns={"numbers": numbers, "target": target},
                )
        raise UserError(
            f"Task 'countdown' found no target within 1..{self.max_target} for "
            f"{self.numbers} numbers up to {self.max_number}; raise 'max_target'."
        )
