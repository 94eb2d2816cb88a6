"""Answer extraction and the format bonus, on the strings models actually write."""

import time

import pytest

from maspo.rewards import extract_answer, format_reward


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # the last box wins
        ("\\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),  # nested braces
        ("\\boxed{7} and a cut-off \\boxed{8", "7"),  # an unclosed box is skipped
        ("\\boxed {5}", "5"),
        ("7 x 8 = 56.", "56"),  # no box: the last number
        ("x = -3", "-3"),
        ("5-3", "3"),  # a minus between operands is not a sign
        ("about 0.75 or 3/4", "3/4"),
        ("1,234 apples", "1234"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_answer(completion: str, answer: str | None) -> None:
    assert extract_answer(completion) == answer


@pytest.mark.parametrize(
    ("completion", "bonus"),
    [
        ("\\boxed{3}", 1.0),
        ("  56 ", 1.0),
        ("-0.5", 1.0),
        ("3/4", 1.0),
        ("It is 56", 0.0),
        ("\\boxed{}", 0.0),
        ("\\boxed{3", 0.0),
    ],
)
def test_format_reward(completion: str, bonus: float) -> None:
    assert format_reward(completion) == bonus


@pytest.mark.parametrize(
    "hostile",
    [
        "{" * 10**5 + "\\boxed{" * 10**5,
        "\\boxed{" + "(" * 10**6,
        "1 " * 5 * 10**5,
        "\ud800" * 10**5,
    ],
)
def test_extraction_is_fast_on_hostile_text(hostile: str) -> None:
    start = time.monotonic()
    extract_answer(hostile)
    format_reward(hostile)
    assert time.monotonic() - start < 2.0
