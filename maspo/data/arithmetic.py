"""Arithmetic drill: "What is 7 x 8? Reply briefly and end your reply with the number.",
scored by the "arithmetic" reward: credit only for a finished reply that ends with the
right integer, which is exactly the format the prompt asks for."""

import dataclasses
import random
from typing import ClassVar

from maspo.data.example import Example
from maspo.data.settings import check_int
from maspo.errors import UserError

ALLOWED_OPS = "+-x"  # x is multiplication, written as people write it in prompts
MAX_DIGITS = 9  # operands up to 999,999,999; beyond that it is a bignum test, not arithmetic
MAX_OPERANDS = 8
PROMPT = "What is {question}? Reply briefly and end your reply with the number."


def evaluate(operands: list[int], ops: list[str]) -> int:
    """Value of `a op b op c ...` with x binding tighter than + and -."""
    total, term = 0, operands[0]
    sign = 1
    for op, operand in zip(ops, operands[1:]):
        if op == "x":
            term *= operand
        else:
            total += sign * term
            sign, term = (1 if op == "+" else -1), operand
    return total + sign * term


@dataclasses.dataclass(frozen=True)
class ArithmeticTask:
    """Random `a op b [op c ...]` problems; every setting is checked on construction."""

    digits: int = 1  # digits per operand; 1 means 0-9, d > 1 means 10^(d-1) to 10^d - 1
    ops: str = "+x"  # operators to draw from, any of "+", "-", "x"
    operands: int = 2  # numbers per problem
    name: ClassVar[str] = "arithmetic"

    def __post_init__(self) -> None:
        check_int(self.name, "digits", self.digits, 1, MAX_DIGITS)
        check_int(self.name, "operands", self.operands, 2, MAX_OPERANDS)
        if not isinstance(self.ops, str) or not self.ops or set(self.ops) - set(ALLOWED_OPS):
            raise UserError(
                f"Task 'arithmetic' setting 'ops' must be a non-empty string of "
                f"{ALLOWED_OPS!r} characters, got {self.ops!r}."
            )

    def sample(self, rng: random.Random) -> Example:
        """One problem drawn from `rng`."""
        low = 0 if self.digits == 1 else 10 ** (self.digits - 1)
        high = 10**self.digits - 1
        operands = [rng.randint(low, high) for _ in range(self.operands)]
        ops = [rng.choice(self.ops) for _ in range(self.operands - 1)]
        question = str(operands[0])
        for op, operand in zip(ops, operands[1:]):
            question += f" {op} {operand}"
        answer = str(evaluate(operands, ops))
        return Example(prompt=PROMPT.format(question=question), answer=answer, reward="arithmetic")
