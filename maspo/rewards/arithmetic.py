"""The built-in arithmetic task's reward: the right number, as the end of a finished reply.

A completion earns 1.0 when its last number is the reference integer and nothing but an
optional full stop and whitespace follows it: "11", "11.", "4 + 7 = 11" and "The answer
is 11." earn it; "11 is the answer", "4 + 7 = 11\\nIn maths ..." and "1.1" do not. That
the reply finished at all (ended with EOS rather than at the length cap) is checked by
``maspo.scoring.Scorer``, which gives cut completions no credit.
"""

import re

# the final integer of the text, not glued to a letter, decimal point, power or fraction
FINAL_INTEGER = re.compile(r"(?<![\w.^/])(-?\d+)\.?\s*\Z")


def final_integer(completion: str) -> str | None:
    """The integer the completion ends with (see the module docstring), else None."""
    match = FINAL_INTEGER.search(completion)
    return match.group(1) if match else None


def arithmetic_reward(completion: str, reference: str) -> float:
    """1.0 when the completion ends with the integer ``reference``, else 0.0."""
    answer = final_integer(completion)
    return 1.0 if answer is not None and int(answer) == int(reference) else 0.0
