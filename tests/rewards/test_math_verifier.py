"""math-verify scoring: equivalences, and bounded time on hostile completions."""

import logging
import os
import signal
import threading
import time

import pytest

from maspo.rewards import Verifier, math_reward

HOSTILE_BOUND_S = 5.0
HOSTILE_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def verifier():
    with Verifier() as verifier:
        yield verifier


@pytest.fixture(scope="module")
def strict_verifier():
    with Verifier(timeout_s=HOSTILE_TIMEOUT_S) as verifier:
        yield verifier


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("\\boxed{\\frac{1}{2}}", "1/2"),
        ("It is 0.5", "\\frac{1}{2}"),
        ("\\boxed{2/4}", "$\\frac12$"),
        ("\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{x = 5}", "5"),
        ("\\boxed{1,000}", "1000"),
        ("7 x 8 = 56", "56"),
        ("12", "Add them up: \\boxed{12}."),  # a full solution as reference: its box
    ],
)
def test_equivalent_answers_score_one(verifier: Verifier, completion: str, reference: str):
    assert verifier.score([completion], [reference]) == [1.0]


@pytest.mark.parametrize(
    ("completion", "reference"),
    [("\\boxed{0.51}", "1/2"), ("7 x 8 = 54", "56"), ("I don't know", "5"), ("\\boxed{x}", "5")],
)
def test_wrong_or_missing_answers_score_zero(verifier: Verifier, completion: str, reference: str):
    assert verifier.score([completion], [reference]) == [0.0]


def test_batch_keeps_order_and_counts(verifier: Verifier) -> None:
    before = verifier.stats.checks
    scores = verifier.score(["\\boxed{3}", "4", "no answer"], ["3", "3", "3"])
    assert scores == [1.0, 0.0, 0.0]
    assert verifier.stats.checks == before + 3


def test_scoring_works_from_a_worker_thread(verifier: Verifier) -> None:
    result = []
    thread = threading.Thread(
        target=lambda: result.extend(verifier.score(["\\boxed{0.25}"], ["1/4"]))
    )
    thread.start()
    thread.join()
    assert result == [1.0]


def test_math_reward_uses_math_verify() -> None:
    assert math_reward("so \\boxed{\\frac{3}{4}}", "0.75") == 1.0
    assert math_reward("so \\boxed{\\frac{3}{5}}", "0.75") == 0.0


HOSTILE = {
    "power tower": "\\boxed{9^{9^{9^9}}}",
    "flat power tower": "\\boxed{9^9^9^9}",
    "huge power": "\\boxed{10^{10^{10}}}",
    "huge factorial": "\\boxed{(10^{8})!}",
    "million digits": "1" * 10**6,
    "million letters": "x" * 10**6,
    "deep brackets": "\\boxed{" + "(" * 10**5 + "1" + ")" * 10**5 + "}",
    "unclosed braces": "{" * 10**5 + "\\boxed{" * 10**5,
    "deep latex": "\\boxed{" + "\\sqrt{" * 150 + "2" + "}" * 150 + "}",
    "lone surrogate": "\\boxed{\ud800}",
    "surrogate soup": "\ud800\udfff" * 10**5,
}


@pytest.mark.parametrize("completion", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_completion_scores_zero_in_bounded_time(strict_verifier: Verifier, completion: str):
    start = time.monotonic()
    assert strict_verifier.score([completion], ["5"]) == [0.0]
    assert time.monotonic() - start < HOSTILE_BOUND_S
    assert strict_verifier.score(["\\boxed{5}"], ["5.0"]) == [1.0]  # still working afterwards


def test_invalid_unicode_elsewhere_does_not_break_scoring(strict_verifier: Verifier) -> None:
    assert strict_verifier.score(["\ud800 therefore \\boxed{\\frac{6}{4}}"], ["1.5"]) == [1.0]


def test_timeout_is_counted_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    with Verifier(timeout_s=HOSTILE_TIMEOUT_S) as verifier, caplog.at_level(logging.WARNING):
        assert verifier.score([HOSTILE["power tower"]], ["5"]) == [0.0]
        assert verifier.stats.timeouts == 1
        assert "timeout" in caplog.text


def test_stuck_child_is_killed_and_replaced() -> None:
    with Verifier(timeout_s=HOSTILE_TIMEOUT_S) as verifier:
        assert verifier.score(["\\boxed{2}"], ["2.0"]) == [1.0]  # starts the child
        stuck = verifier.child_pid
        os.kill(stuck, signal.SIGSTOP)  # a child that never answers, like one stuck in C code
        start = time.monotonic()
        assert verifier.score(["\\boxed{3/2}"], ["4"]) == [0.0]
        assert time.monotonic() - start < HOSTILE_BOUND_S
        assert (verifier.stats.timeouts, verifier.stats.restarts) == (1, 1)
        assert verifier.score(["\\boxed{0.5}"], ["1/2"]) == [1.0]
        assert verifier.child_pid not in (None, stuck)


def test_crashed_child_counts_an_error_and_is_replaced() -> None:
    with Verifier(timeout_s=HOSTILE_TIMEOUT_S) as verifier:
        assert verifier.score(["\\boxed{2}"], ["2.0"]) == [1.0]  # starts the child
        os.kill(verifier.child_pid, signal.SIGKILL)
        time.sleep(0.1)
        assert verifier.score(["\\boxed{3/2}"], ["4"]) == [0.0]
        assert (verifier.stats.errors, verifier.stats.restarts) == (1, 1)
        assert verifier.score(["\\boxed{0.5}"], ["1/2"]) == [1.0]


def test_close_stops_the_child() -> None:
    verifier = Verifier()
    verifier.score(["\\boxed{1}"], ["1.0"])
    pid = verifier.child_pid
    verifier.close()
    assert verifier.child_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_integers_are_compared_exactly(verifier: Verifier) -> None:
    big = "123456789012345678901234567890"
    assert verifier.score([f"\\boxed{{{big}}}", f"{big[:-1]}1", "007"], [big, big, "7"]) == [
        1.0,
        0.0,
        1.0,
    ]


@pytest.mark.parametrize(
    ("gold", "plain"),
    [
        ("\\boxed{104.}", "104"),
        ("\\boxed{\\textbf{(C) }18}", "18"),
        ("\\boxed{\\textbf{(073)}}", "73"),
        ("62.5\\%", "62.5"),
        ("$2$", "2"),
        ("6 \\times 10^{5}", "600000"),
        ("1e5", "100000"),
    ],
)
def test_golds_as_published_verify_against_themselves_and_their_value(
    verifier: Verifier, gold: str, plain: str
) -> None:
    boxed_gold = gold if gold.startswith("\\boxed") else f"\\boxed{{{gold}}}"
    assert verifier.score_strict([boxed_gold, f"\\boxed{{{plain}}}"], [gold, gold]) == [1.0, 1.0]
    assert verifier.score([f"so it is {plain}"], [gold]) == [1.0]


def test_any_reference_of_a_list_is_correct(verifier: Verifier) -> None:
    references = [["3", "-3"], ["3", "-3"], ("$2$",)]
    assert verifier.score(["\\boxed{-3}", "\\boxed{9}", "2"], references) == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="at least one"):
        verifier.score(["1"], [[]])


@pytest.mark.parametrize(
    ("completion", "lenient", "strict"),
    [
        ("\\boxed{12}", 1.0, 1.0),
        ("The answer is 12.", 1.0, 0.0),  # strict: only a final box counts
        ("\\boxed{12} but wait, \\boxed{13", 1.0, 0.0),  # the final box was cut off
        ("Tom has 5 apples and buys 12.", 1.0, 0.0),  # an echo of the question
    ],
)
def test_strict_counts_only_the_final_box(verifier, completion, lenient, strict) -> None:
    assert verifier.score([completion], ["12"]) == [lenient]
    assert verifier.score_strict([completion], ["12"]) == [strict]


def test_timeout_is_not_cached_and_the_pair_is_checked_again() -> None:
    with Verifier(timeout_s=HOSTILE_TIMEOUT_S) as verifier:
        assert verifier.score(["\\boxed{2}"], ["2.0"]) == [1.0]  # starts the child
        os.kill(verifier.child_pid, signal.SIGSTOP)  # the next check times out
        pair = (["\\boxed{0.5}", "so 0.5"], ["1/2", "1/2"])  # one pair, twice
        assert verifier.score(*pair) == [0.0, 0.0]
        assert verifier.stats.timeouts == 2  # each sample counted ...
        assert verifier.stats.child_checks == 2  # ... but the pair was sent to it once
        assert verifier.score(*pair) == [1.0, 1.0]  # a healthy check: the true verdicts
        assert verifier.stats.timeouts == 2 and verifier.stats.cache_hits == 1


def test_a_failed_pair_repeated_in_one_call_costs_one_timeout() -> None:
    with Verifier(timeout_s=HOSTILE_TIMEOUT_S) as verifier:
        start = time.monotonic()
        assert verifier.score([HOSTILE["power tower"]] * 4, ["5"] * 4) == [0.0] * 4
        assert time.monotonic() - start < HOSTILE_BOUND_S
        assert (verifier.stats.timeouts, verifier.stats.child_checks) == (4, 1)


def test_answer_classes_group_equivalent_answers(verifier: Verifier) -> None:
    answers = ["12", "12.0", None, "24/2", "13", "\\frac{24}{2}", "x", "x", "\\frac{26}{2}"]
    assert verifier.answer_classes(answers) == [0, 0, None, 0, 4, 0, 6, 6, 4]
    assert verifier.same_answer("0.5", "\\frac{1}{2}") and not verifier.same_answer("1", "2")
