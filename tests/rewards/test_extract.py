"""Answer extraction and the format bonus, on the strings models actually write."""

import time

import pytest

from maspo.rewards import extract_answer, final_boxed, format_reward, normalize_answer


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
        # The cases: a signature line after a solution with no box.
        ("So the answer is 42.\n\n-- Sam, 2010", "42"),
        ("Answer: 7 apples\nchecked on 3/4/2010", "7"),
        ("Answer: 7 x 8 = 56", "56"),  # the marker's line, its last number
        ("The answer is:\n\n42\n", "42"),  # nothing on the marker's line: the next number
        ("#### 1,200", "1200"),
        ("so 1e5 grains", "1e5"),  # a decimal exponent, not its last digit
        ("x = 2.5E-3", "2.5E-3"),
        # Kept, documented: "100,200" reads as one thousands-separated number, as GSM8K
        # writes 1,200; with no answer marker, the last number still wins over a signature.
        ("100,200", "100200"),
        ("It is 42.\n\n-- Sam, 2010", "2010"),
    ],
)
def test_extract_answer(completion: str, answer: str | None) -> None:
    assert extract_answer(completion) == answer


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{7} and a cut-off \\boxed{8", None),  # the final box is unclosed
        ("The answer is 42", None),  # no box: no answer, whatever the numbers
        ("Echoing the question: 3 apples and 4 pears", None),
    ],
)
def test_final_boxed_is_the_strict_rule(completion: str, answer: str | None) -> None:
    assert final_boxed(completion) == answer


@pytest.mark.parametrize(
    ("answer", "normal"),
    [
        ("104.", "104"),
        ("\\textbf{(C) }18", "18"),
        ("\\text{(C) }18", "18"),
        ("(C) 18", "18"),
        ("\\textbf{(073)}", "(073)"),
        ("62.5\\%", "62.5"),
        ("62.5%", "62.5"),
        ("$2$", "2"),
        ("1e5", "100000"),
        ("2.5e-3", "0.0025"),
        ("1e999", "1e999"),  # a huge exponent stays as written (no 1000-digit string)
        ("(C)", "(C)"),  # a label alone is the answer
        ("\\frac{1}{2}", "\\frac{1}{2}"),
    ],
)
def test_normalize_answer(answer: str, normal: str) -> None:
    assert normalize_answer(answer) == normal


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
