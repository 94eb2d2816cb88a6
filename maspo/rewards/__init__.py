"""Verifiers that turn a completion into a reward; the same code scores training and eval.

- `extract_answer` (lenient), `final_boxed` (strict), `normalize_answer`, `format_reward`:
  answer extraction and the optional format bonus.
- `Verifier`, `math_reward`, `strict_math_reward`: math-verify equivalence, time-bounded
  in a child process.
- `countdown_reward`: the Countdown arithmetic-puzzle check (no eval).
- `load_reward_fn`: TRL-style reward functions by name or "package.module:function".
"""

from maspo.rewards.countdown import countdown_reward, evaluate_expression, extract_expression
from maspo.rewards.extract import extract_answer, final_boxed, format_reward, normalize_answer
from maspo.rewards.registry import REWARD_FUNCTIONS, RewardFn, checked, load_reward_fn
from maspo.rewards.verifier import (
    Verifier,
    VerifierStats,
    default_verifier,
    math_reward,
    strict_math_reward,
)

__all__ = [
    "REWARD_FUNCTIONS",
    "RewardFn",
    "Verifier",
    "VerifierStats",
    "checked",
    "countdown_reward",
    "default_verifier",
    "evaluate_expression",
    "extract_answer",
    "extract_expression",
    "final_boxed",
    "format_reward",
    "load_reward_fn",
    "math_reward",
    "normalize_answer",
    "strict_math_reward",
]
