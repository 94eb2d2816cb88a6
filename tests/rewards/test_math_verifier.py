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
