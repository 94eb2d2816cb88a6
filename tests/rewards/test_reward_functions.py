"""TRL-style reward functions: lookup by name or import path, and return validation."""

import sys
import textwrap

import pytest

from maspo.errors import UserError
from maspo.rewards import load_reward_fn


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A real importable module `my_rewards` holding good and broken reward functions."""
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            """
            def length(completions, **columns):
                return [float(len(c)) for c in completions]

            def too_short(completions, **columns):
                return [1.0]

            def not_finite(completions, **columns):
                return [float("nan")] * len(completions)

            def not_numbers(completions, **columns):
                return ["good"] * len(completions)

            def a_tuple_of_ints(completions, **columns):
                return tuple(1 for _ in completions)

            NOT_A_FUNCTION = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    sys.modules.pop("my_rewards", None)


def test_builtin_math_reads_the_answer_column() -> None:
    reward = load_reward_fn("math")
    completions = ["\\boxed{\\frac{1}{2}}", "0.3", [{"role": "assistant", "content": "56"}]]
    assert reward(completions, answer=["0.5", "1/2", "56"], prompt=["a", "b", "c"]) == [
        1.0,
        0.0,
        1.0,
    ]
    assert reward.__name__ == "math"


def test_builtin_format_and_countdown() -> None:
    assert load_reward_fn("format")(["\\boxed{1}", "well"]) == [1.0, 0.0]
    countdown = load_reward_fn("countdown")
    scores = countdown(
        ["\\boxed{2 * 3 + 4}", "\\boxed{2 + 3 + 4}"], numbers=[[2, 3, 4]] * 2, target=[10, 10]
    )
    assert scores == [1.0, 0.0]


def test_builtin_without_its_column_names_the_column() -> None:
    with pytest.raises(UserError, match="'math' reward needs the 'answer' column"):
        load_reward_fn("math")(["1"])


def test_user_function_by_import_path(user_module: str) -> None:
    reward = load_reward_fn(f"{user_module}:length")
    assert reward(["ab", "abc"]) == [2.0, 3.0]
    assert load_reward_fn(f"{user_module}:a_tuple_of_ints")(["a", "b"]) == [1.0, 1.0]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("too_short", "returned 1 values for 2 completions"),
        ("not_finite", "returned nan at index 0"),
        ("not_numbers", "returned 'good' at index 0"),
    ],
)
def test_bad_returns_name_the_function(user_module: str, function: str, message: str) -> None:
    reward = load_reward_fn(f"{user_module}:{function}")
    with pytest.raises(UserError, match=f"'{user_module}:{function}' {message}"):
        reward(["a", "b"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonsense", "Unknown reward 'nonsense'"),
        ("no_such_module_xyz:f", "Cannot import module 'no_such_module_xyz'"),
        ("my_rewards:missing", "has no function 'missing'"),
        ("my_rewards:NOT_A_FUNCTION", "has no function 'NOT_A_FUNCTION'"),
        (":f", "must look like 'package.module:function'"),
    ],
)
def test_bad_specs_name_the_culprit(user_module: str, spec: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_reward_fn(spec)


def test_user_errors_are_one_sentence(user_module: str) -> None:
    with pytest.raises(UserError) as caught:
        load_reward_fn(f"{user_module}:not_finite")(["a"])
    text = str(caught.value)
    assert text.endswith(".") and "\n" not in text


def test_math_rewards_take_list_references_and_strict_needs_the_final_box() -> None:
    completions = ["\\boxed{-3}", "It is 12.", "\\boxed{12}"]
    answers = [("3", "-3"), "12", "12.0"]
    assert load_reward_fn("math")(completions, answer=answers) == [1.0, 1.0, 1.0]
    assert load_reward_fn("math_strict")(completions, answer=answers) == [1.0, 0.0, 1.0]
