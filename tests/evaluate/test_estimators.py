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
