"""Reward functions with TRL's contract, `f(completions, **columns) -> list[float]`.

`load_reward_fn(spec)` takes a built-in name (see `REWARD_FUNCTIONS`) or
"package.module:function", and returns the function wrapped so that an exception in it or
a wrong return (wrong length, non-number, NaN) is a one-sentence `UserError` naming it.
Completions may be strings or chat message lists (the last message's content is scored),
as in TRL.
"""

import functools
import importlib
import math
import numbers
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from maspo.errors import UserError
from maspo.rewards.arithmetic import arithmetic_reward
from maspo.rewards.countdown import countdown_reward
from maspo.rewards.extract import format_reward
from maspo.rewards.verifier import default_verifier

RewardFn = Callable[..., list[float]]


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a completion: itself, or the content of a chat message list's last message."""
    if isinstance(completion, str):
        return completion
    return str(completion[-1]["content"]) if completion else ""


def _column(columns: dict[str, Any], name: str, reward: str, size: int) -> Sequence[Any]:
    if name not in columns:
        raise UserError(f"The {reward!r} reward needs the {name!r} column, but the data has none.")
    values = columns[name]
    if len(values) != size:
        raise UserError(
            f"The {reward!r} reward got {len(values)} {name!r} values for {size} completions."
        )
    return values


def _references(answers: Sequence[Any]) -> list[str | list[str]]:
    """Each row's reference: a string, or a list of strings of which any is correct."""
    return [[str(x) for x in a] if isinstance(a, (list, tuple)) else str(a) for a in answers]


def math_accuracy(completions: list, **columns: Any) -> list[float]:
    """1.0 where the completion's answer equals the `answer` column (math-verify), else 0.0.

    Lenient: the last `\\boxed{}`, else the stated answer, else the last number.
    """
    answers = _column(columns, "answer", "math", len(completions))
    texts = [completion_text(c) for c in completions]
    return default_verifier().score(texts, _references(answers))


def strict_math_accuracy(completions: list, **columns: Any) -> list[float]:
    """1.0 where the completion's final `\\boxed{}` equals the `answer` column, else 0.0."""
    answers = _column(columns, "answer", "math_strict", len(completions))
    texts = [completion_text(c) for c in completions]
    return default_verifier().score_strict(texts, _references(answers))


def format_bonus(completions: list, **columns: Any) -> list[float]:
    """1.0 where the answer is boxed or the completion is just a number (`format_reward`)."""
    return [format_reward(completion_text(c)) for c in completions]


def arithmetic_accuracy(completions: list, **columns: Any) -> list[float]:
    """1.0 where the completion ends with the `answer` column's integer (`arithmetic_reward`)."""
    answers = _column(columns, "answer", "arithmetic", len(completions))
    return [arithmetic_reward(completion_text(c), str(a)) for c, a in zip(completions, answers)]


def countdown_accuracy(completions: list, **columns: Any) -> list[float]:
    """1.0 where the expression uses the `numbers` column exactly once and hits `target`."""
    size = len(completions)
    number_lists = _column(columns, "numbers", "countdown", size)
    targets = _column(columns, "target", "countdown", size)
    return [
        countdown_reward(completion_text(c), list(n), int(t))
        for c, n, t in zip(completions, number_lists, targets)
    ]


REWARD_FUNCTIONS: dict[str, RewardFn] = {
    "math": math_accuracy,
    "math_strict": strict_math_accuracy,
    "format": format_bonus,
    "countdown": countdown_accuracy,
    "arithmetic": arithmetic_accuracy,
}


def _import_function(spec: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserError(f"Reward {spec!r} must look like 'package.module:function'.")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any import failure is the user's module
        raise UserError(
            f"Cannot import module {module_name!r} for reward {spec!r} "
            f"({type(error).__name__}: {error})."
        ) from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise UserError(f"Module {module_name!r} has no function {attribute!r} (reward {spec!r}).")
    return function


def checked(function: Callable[..., Any], name: str) -> RewardFn:
    """Wrap a reward function so its return is validated: one finite number per completion."""

    @functools.wraps(function)
    def wrapper(completions: list, **columns: Any) -> list[float]:
        try:
            rewards = function(completions, **columns)
        except UserError:
            raise
        except Exception as error:  # the user's code failed: name it and where
            frame = traceback.extract_tb(error.__traceback__)[-1]
            detail = (str(error).strip().splitlines() or [""])[0]
            raise UserError(
                f"Reward function {name!r} raised {type(error).__name__}"
                + (f": {detail}" if detail else "")
                + f" (at {Path(frame.filename).name}:{frame.lineno}); fix the function."
            ) from None
        if not isinstance(rewards, (list, tuple)):
            raise UserError(
                f"Reward function {name!r} returned {type(rewards).__name__}, not a list."
            )
        if len(rewards) != len(completions):
            raise UserError(
                f"Reward function {name!r} returned {len(rewards)} values "
                f"for {len(completions)} completions."
            )
        for index, value in enumerate(rewards):
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise UserError(
                    f"Reward function {name!r} returned {value!r} at index {index}, "
                    "not a finite number."
                )
        return [float(value) for value in rewards]

    wrapper.__name__ = name if name in REWARD_FUNCTIONS else function.__name__
    return wrapper


def load_reward_fn(spec: str) -> RewardFn:
    """The reward function named by `spec`: a built-in name or "package.module:function"."""
    if spec in REWARD_FUNCTIONS:
        return checked(REWARD_FUNCTIONS[spec], spec)
    if ":" not in spec:
        names = ", ".join(REWARD_FUNCTIONS)
        raise UserError(
            f"Unknown reward {spec!r}; use one of {names} or 'package.module:function'."
        )
    return checked(_import_function(spec), spec)
