"""Built-in generated tasks, looked up by name, with disjoint train and test streams.

The held-out test set is a fixed list drawn from `Random(f"{seed}:test")`; the train
stream draws from `Random(f"{seed}:train")` and skips any prompt in that test set, so the
two never share a prompt and both are identical for the same seed and settings.
"""

import dataclasses
import random
from collections.abc import Iterator
from typing import Protocol

from maspo.data.arithmetic import ArithmeticTask
from maspo.data.countdown import CountdownTask
from maspo.data.example import Example
from maspo.errors import UserError

# Draw budgets before a split is declared impossible (the task has too few distinct
# prompts); generous, since small tasks need coupon-collector numbers of draws.
TEST_DRAWS_PER_EXAMPLE = 100
TEST_DRAWS_FLOOR = 10_000
TRAIN_REJECTIONS_IN_A_ROW = 10_000


class Task(Protocol):
    """A generator of examples; settings are dataclass fields validated on construction."""

    name: str

    def sample(self, rng: random.Random) -> Example: ...


TASKS: dict[str, type] = {"arithmetic": ArithmeticTask, "countdown": CountdownTask}


def get_task(name: str, **settings: object) -> Task:
    """The built-in task `name` with `settings`; unknown names or settings are UserErrors."""
    if name not in TASKS:
        raise UserError(f"Unknown task {name!r}; built-in tasks are {', '.join(TASKS)}.")
    task_class = TASKS[name]
    known = [field.name for field in dataclasses.fields(task_class)]
    for setting in settings:
        if setting not in known:
            raise UserError(
                f"Task {name!r} has no setting {setting!r}; its settings are {', '.join(known)}."
            )
    return task_class(**settings)


def heldout_set(task: Task, *, seed: int = 0, size: int) -> list[Example]:
    """`size` examples with distinct prompts, fixed by (task, seed); the held-out split."""
    if type(size) is not int or size < 0:
        raise UserError(f"Test set size must be a non-negative integer, got {size!r}.")
    rng = random.Random(f"{seed}:test")
    examples: dict[str, Example] = {}
    for _ in range(size * TEST_DRAWS_PER_EXAMPLE + TEST_DRAWS_FLOOR):
        if len(examples) == size:
            return list(examples.values())
        example = task.sample(rng)
        examples.setdefault(str(example.prompt), example)
    if len(examples) == size:
        return list(examples.values())
    raise UserError(
        f"Task {task.name!r} has fewer than {size} distinct prompts with these settings; "
        "lower the test size or widen the settings."
    )


def train_stream(task: Task, *, seed: int = 0, test_size: int) -> Iterator[Example]:
    """Endless training examples, fixed by (task, seed), never a prompt of `heldout_set`."""
    held_out = {str(example.prompt) for example in heldout_set(task, seed=seed, size=test_size)}
    rng = random.Random(f"{seed}:train")
    rejections = 0
    while True:
        example = task.sample(rng)
        if str(example.prompt) in held_out:
            rejections += 1
            if rejections >= TRAIN_REJECTIONS_IN_A_ROW:
                raise UserError(
                    f"Task {task.name!r} has no prompts left for training once the "
                    f"{test_size} test prompts are held out; lower the test size."
                )
            continue
        rejections = 0
        yield example
