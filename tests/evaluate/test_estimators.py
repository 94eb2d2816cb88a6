"""Pass@k against exact enumeration; Avg@n and Maj@k worked by hand."""

from __future__ import annotations

import itertools
import math

import pytest

from maspo.errors import UserError
from maspo.evaluate import (
    average_metrics,
    maj_at_k,
    majority_correct,
    parse_ks,
    pass_at_k,
    verdict_metrics,
)


def enumerated_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_exact_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(enumerated_pass_at_k(n, c, k),
                                                       abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    n, c, k = 2000, 3, 1000  # C(2000, 1000) ~ 1e600: no float holds it
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # Python ints, exact rational
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)
    assert pass_at_k(n, 0, k) == 0.0 and pass_at_k(n, n, 1) == 1.0


def test_pass_at_1_is_the_fraction_correct():
    assert pass_at_k(32, 8, 1) == pytest.approx(0.25)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_majority_vote_by_hand():
    # "7" has 2 votes, "5" 1; None does not vote; "7" was judged correct
    assert majority_correct(["7", "5", None, " 7"], [True, False, False, True])
    # a tie goes to the answer seen first
    assert not majority_correct(["5", "7"], [False, True])
    assert majority_correct(["7", "5"], [True, False])
    # nobody answered: wrong
    assert not majority_correct([None, None], [False, False])


def test_maj_at_k_averages_disjoint_groups_of_k():
    answers = ["1", "1", "2", "9", "9", "9", "3"]
    correct = [True, True, False, False, False, False, False]
    # k = 2: groups [1,1] right, [2,9] tie -> "2" wrong, [9,9] wrong; the 7th is unused
    assert maj_at_k(answers, correct, 2) == pytest.approx(1 / 3)
    # k = 3: [1,1,2] right, [9,9,9] wrong
    assert maj_at_k(answers, correct, 3) == pytest.approx(1 / 2)
    # k = 1: each sample alone is its own vote: Maj@1 = Avg
    assert maj_at_k(answers, correct, 1) == pytest.approx(2 / 7)
    # k = n: one vote over all seven: "9" wins
    assert maj_at_k(answers, correct, 7) == 0.0


def test_dataset_metrics_by_hand():
    correct = [[True, False, False, True], [False, False, False, False]]
    answers = [["3", "4", "4", "3"], ["8", "8", None, "1"]]
    m = verdict_metrics(correct, answers, [1, 2, 4])
    assert m["avg@4"] == pytest.approx(2 / 8)
    assert m["pass@1"] == pytest.approx((2 / 4 + 0) / 2)
    assert m["pass@2"] == pytest.approx((1 - 1 / 6 + 0) / 2)  # 1 - C(2,2)/C(4,2)
    assert m["pass@4"] == pytest.approx(1 / 2)
    # groups of 2: problem 1 -> [3,4] tie "3" right, [4,3] tie "4" wrong -> 1/2; problem 2 -> 0
    assert m["maj@2"] == pytest.approx(1 / 4)
    # one vote of 4: problem 1 tie 3:2 vs 4:2 -> "3" (first) right; problem 2 "8" wrong
    assert m["maj@4"] == pytest.approx(1 / 2)
    assert list(m) == ["avg@4", "pass@1", "pass@2", "pass@4", "maj@1", "maj@2", "maj@4"]


def test_average_over_datasets_is_unweighted():
    avg = average_metrics([{"avg@2": 1.0}, {"avg@2": 0.0}])
    assert avg == {"avg@2": 0.5}


def test_k_list_parsing_names_the_bad_value():
    assert parse_ks("8,1,n,4", 8) == [1, 4, 8]
    with pytest.raises(UserError, match="16"):
        parse_ks("1,16", 8)
    with pytest.raises(UserError, match="'four'"):
        parse_ks("four", 8)


def _problem(completions: list[str], answer: str = "12", reward: str = "math_strict"):
    from maspo.data import Example
    from maspo.evaluate import ProblemResult
    from maspo.rewards import load_reward_fn

    correct = [v > 0.5 for v in load_reward_fn(reward)(completions, answer=[answer] * len(
        completions))]
    return ProblemResult(Example("p", answer, reward), completions, correct,
                         [float(c) for c in correct])


def test_maj_votes_on_equivalence_classes_not_strings():
    # 12, 12.0 and 24/2 are one vote (3) against 13 (2): the majority is right.
    result = _problem(["\\boxed{12}", "\\boxed{13}", "\\boxed{12.0}", "\\boxed{13}",
                       "\\boxed{24/2}"])
    assert result.extracted == ["12", "13", "12.0", "13", "24/2"]
    assert result.answers == ["12", "13", "12", "13", "12"]
    assert maj_at_k(result.answers, result.correct, 5) == 1.0
    assert maj_at_k(result.extracted, result.correct, 5) == 0.0  # raw strings: 13 wins


def test_maj_votes_use_the_answer_the_check_reads():
    # strict: only a final box is an answer; lenient: the stated answer counts too
    strict = _problem(["The answer is 13", "The answer is 13", "\\boxed{12}"])
    lenient = _problem(["The answer is 13", "The answer is 13", "\\boxed{12}"], reward="math")
    assert maj_at_k(strict.answers, strict.correct, 3) == 1.0
    assert maj_at_k(lenient.answers, lenient.correct, 3) == 0.0


def test_paper_table_has_a_column_per_benchmark_and_rows_per_metric():
    from maspo.evaluate import DatasetReport, dataset_metrics, eval_table, paper_table

    a = [_problem(["\\boxed{12}", "\\boxed{1}"]), _problem(["\\boxed{3}", "\\boxed{4}"])]
    b = [_problem(["\\boxed{12}", "\\boxed{12}"])]
    reports = [DatasetReport("aime24", "a.jsonl", a, dataset_metrics(a, [1, 2]), timeouts=3),
               DatasetReport("math500", "b.jsonl", b, dataset_metrics(b, [1, 2]), errors=1)]
    header, rows = paper_table(reports, 2, [1, 2])
    assert header == ["metric", "aime24", "math500", "average"]
    assert rows == [["avg@2", 0.25, 1.0, 0.625], ["pass@1", 0.25, 1.0, 0.625],
                    ["pass@2", 0.5, 1.0, 0.75], ["maj@1", 0.25, 1.0, 0.625],
                    ["maj@2", 0.5, 1.0, 0.75], ["problems", 2, 1, 3],
                    ["timeouts", 3, 0, 3], ["errors", 0, 1, 1]]
    lines = eval_table(reports, 2, [1, 2]).splitlines()
    assert lines[0].split("|")[1:-1] == [" metric (%) ", " aime24 ", " math500 ", " average "]
    assert lines[2].split() == ["|", "avg@2", "|", "25.0", "|", "100.0", "|", "62.5", "|"]
    assert lines[-2].split() == ["|", "timeouts", "|", "3", "|", "0", "|", "3", "|"]


@pytest.mark.parametrize(("settings", "field"), [
    ({"n": 0}, "eval.n"), ({"n": 2, "greedy": True}, "eval.greedy"),
    ({"n": 1, "temperature": 0.0}, "sampling.temperature"),
    ({"n": 1, "top_p": 1.5}, "sampling.top_p"),
    ({"n": 1, "prompts_per_batch": 0}, "eval.prompts_per_batch"),
])
def test_eval_settings_name_the_setting_and_the_command_line_names_its_flag(settings, field):
    """The library names its own field; only the command line knows the flag."""
    from maspo.cli_parser import FLAGS
    from maspo.errors import FieldError
    from maspo.evaluate import eval_settings

    with pytest.raises(FieldError) as caught:
        eval_settings(None, **settings)
    assert caught.value.field == field and f"'{field}'" in str(caught.value)
    assert "--" not in str(caught.value)
    shown = str(caught.value.named(FLAGS["eval"]))
    assert shown.startswith(FLAGS["eval"][field]) and "'" + field not in shown
