"""Built-in tasks: determinism by seed, disjoint splits, verifiable answers, bad settings."""

import itertools
import time

import pytest

from maspo.data import get_task, heldout_set, train_stream
from maspo.errors import UserError
from maspo.rewards import countdown_reward, evaluate_expression, load_reward_fn

TRAIN_DRAWS = 2000


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("arithmetic", {}),
        ("arithmetic", {"digits": 2, "ops": "+-x", "operands": 3}),
        ("countdown", {}),
        ("countdown", {"numbers": 3, "max_number": 10}),
    ],
)
def test_splits_are_deterministic_and_disjoint(name: str, settings: dict) -> None:
    task = get_task(name, **settings)
    test = heldout_set(task, seed=7, size=50)
    train = list(itertools.islice(train_stream(task, seed=7, test_size=50), TRAIN_DRAWS))
    assert test == heldout_set(get_task(name, **settings), seed=7, size=50)
    assert train[:100] == list(itertools.islice(train_stream(task, seed=7, test_size=50), 100))
    assert len({e.prompt for e in test}) == 50
    assert not {e.prompt for e in test} & {e.prompt for e in train}
    assert test != heldout_set(task, seed=8, size=50)


def test_demo_arithmetic_is_single_digit_plus_and_times() -> None:
    examples = heldout_set(get_task("arithmetic"), size=100)
    for example in examples:
        question = example.prompt.removeprefix("What is ").removesuffix(
            "? Reply briefly and end your reply with the number."
        )
        left, op, right = question.split(" ")
        assert op in "+x" and 0 <= int(left) <= 9 and 0 <= int(right) <= 9
        expected = int(left) + int(right) if op == "+" else int(left) * int(right)
        assert example.answer == str(expected) and example.reward == "arithmetic"


def test_arithmetic_respects_precedence() -> None:
    task = get_task("arithmetic", digits=1, ops="+-x", operands=4)
    for example in heldout_set(task, size=50):
        question = example.prompt.removeprefix("What is ").split("?")[0]
        assert int(example.answer) == eval(question.replace("x", "*"))  # trusted test input


def test_arithmetic_answers_score_one_with_the_math_reward() -> None:
    examples = heldout_set(get_task("arithmetic", digits=2), size=20)
    rows = [example.row() for example in examples]
    reward = load_reward_fn("math")
    completions = [f"The answer is {row['answer']}." for row in rows]
    assert reward(completions, answer=[row["answer"] for row in rows]) == [1.0] * 20


def test_countdown_targets_are_reachable_by_the_stored_answer() -> None:
    for example in heldout_set(get_task("countdown", numbers=5), size=50):
        numbers, target = example.columns["numbers"], example.columns["target"]
        assert len(numbers) == 5 and 1 <= target <= 100 and example.reward == "countdown"
        assert evaluate_expression(example.answer, numbers) == target
        assert countdown_reward(f"\\boxed{{{example.answer}}}", numbers, target) == 1.0


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("sudoku", {}, "Unknown task 'sudoku'"),
        ("arithmetic", {"digit": 2}, "no setting 'digit'"),
        ("arithmetic", {"ops": "+/"}, "setting 'ops'"),
        ("arithmetic", {"digits": 0}, "setting 'digits' must be an integer from 1"),
        ("arithmetic", {"operands": "2"}, "setting 'operands'"),
        ("countdown", {"numbers": 9}, "setting 'numbers' must be an integer from 2 to 6"),
    ],
)
def test_bad_task_or_setting_is_named(name: str, settings: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        get_task(name, **settings)


def test_test_set_larger_than_the_task_is_a_user_error() -> None:
    task = get_task("arithmetic")  # 2 ops x 10 x 10 = 200 distinct prompts
    with pytest.raises(UserError, match="fewer than 201 distinct prompts"):
        heldout_set(task, size=201)
    with pytest.raises(UserError, match="no prompts left for training"):
        next(train_stream(task, test_size=200))


def test_unreachable_countdown_targets_are_a_user_error() -> None:
    task = get_task("countdown", numbers=6, max_number=10_000, max_target=1)
    with pytest.raises(UserError, match="raise 'max_target'"):
        heldout_set(task, size=1)


@pytest.mark.parametrize(
    ("completion", "credit"),
    [
        ("11", 1.0), (" 11.\n", 1.0), ("4 + 7 = 11", 1.0), ("The answer is 11.", 1.0),
        ("11 is the answer", 0.0), ("4 + 7 = 11\nIn maths, 4 + 7 = 12", 0.0),
        ("1.11", 0.0), ("2^11", 0.0), ("4 + 7 = 12", 0.0), ("", 0.0), ("eleven", 0.0),
    ],
)
def test_arithmetic_credit_needs_the_right_integer_at_the_end(completion, credit) -> None:
    [example] = heldout_set(get_task("arithmetic"), size=1)
    answer = example.answer
    text = completion.replace("11", answer).replace("12", str(int(answer) + 1))
    reward = load_reward_fn("arithmetic")([text], answer=[answer])
    assert reward == [credit]


@pytest.mark.parametrize(("hostile", "credit"), [
    ("1" * 10**6 + "x", 0.0), (("1" + " " * 1000) * 1000 + "x", 0.0),
    ("-" * 10**6 + "5", 0.0), ("1 " * 5 * 10**5 + "5", 1.0)])
def test_arithmetic_credit_is_linear_time_on_hostile_text(hostile: str, credit: float) -> None:
    start = time.process_time()
    assert load_reward_fn("arithmetic")([hostile], answer=["5"]) == [credit]
    assert time.process_time() - start < 1.0  # CPU time: immune to a loaded machine
