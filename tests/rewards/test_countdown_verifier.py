"""Countdown: each number exactly once, + - * / and parentheses, exact value, no eval."""

import time

import pytest

from maspo.rewards import countdown_reward, evaluate_expression, extract_expression

NUMBERS = [3, 5, 2, 7]
TARGET = 23


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{(3 + 5) * 2 + 7}",
        "Let me think.\n(3+5)*2+7 = 23",  # last line, with its "= target" dropped
        "<answer>7 + 2 * (3 + 5)</answer>",
        "\\boxed{(3 + 5) \\times 2 + 7}",
    ],
)
def test_valid_expressions_score_one(completion: str) -> None:
    assert countdown_reward(completion, NUMBERS, TARGET) == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{(3 + 5) * 2}",  # 7 unused
        "\\boxed{(3 + 5) * 2 + 7 + 3 - 3}",  # 3 used three times
        "\\boxed{35 - 2 * 7 + 2}",  # digits glued into 35
        "\\boxed{-(-(3 + 5) * 2) + 7}",  # unary minus
        "\\boxed{5 ** 2 - 7 + 3 + 2}",  # power
        "\\boxed{(3 + 5) * 2 + 7.0}",  # float literal
        "\\boxed{(0x3 + 5) * 2 + 7}",  # hex literal
        "\\boxed{__import__('os').system('true')}",
        "\\boxed{(3 + 5) * 2 + 6}",  # wrong value
        "I could not find one.",
        "",
    ],
)
def test_invalid_expressions_score_zero(completion: str) -> None:
    assert countdown_reward(completion, NUMBERS, TARGET) == 0.0


def test_division_is_exact() -> None:
    assert countdown_reward("\\boxed{6 / (1 - 3 / 4)}", [1, 3, 4, 6], 24) == 1.0


def test_repeated_numbers_may_each_be_used() -> None:
    assert countdown_reward("\\boxed{2 + 2 + 5}", [2, 5, 2], 9) == 1.0
    assert countdown_reward("\\boxed{2 + 5}", [2, 5, 2], 7) == 0.0


def test_division_by_zero_scores_zero() -> None:
    assert evaluate_expression("5 / (3 - 3)", [5, 3, 3]) is None
    assert countdown_reward("\\boxed{5 / (3 - 3)}", [5, 3, 3], 1) == 0.0


def test_extract_expression_prefers_answer_tags_then_box() -> None:
    assert extract_expression("\\boxed{1 + 2} <answer>3 * 4</answer>") == "3 * 4"
    assert extract_expression("\\boxed{1 + 2}\nso 3") == "1 + 2"
    assert extract_expression("$7 \\div 7$ = 1") == "7 / 7"


@pytest.mark.parametrize(
    "hostile",
    ["(" * 150 + "3" + ")" * 150, "9" * 10**6, "<answer>" * 10**5 + "(" * 10**5, "\ud800" * 1000],
)
def test_hostile_expressions_score_zero_fast(hostile: str) -> None:
    start = time.monotonic()
    assert countdown_reward(hostile, NUMBERS, TARGET) == 0.0
    assert time.monotonic() - start < 2.0
