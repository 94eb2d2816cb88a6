"""A run's prompts: the endless training stream and the fixed held-out set, from its data
config and seed. The trainer, ``maspo eval`` (a run's ``heldout``) and ``maspo compare``
all take them from here, so the held-out set a run is scored on is the one it never
trained on.

- A built-in task: ``heldout_set`` and ``train_stream`` of the task (disjoint by prompt).
- A data file: ``data.test_path`` is the held-out set, else the first ``data.test_size``
  rows are; the other rows are the training rows, reshuffled every epoch by a generator
  seeded with the epoch number. A hub data set id without a split stands for its
  ``train`` split in ``data.path`` and its ``test`` split in ``data.test_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maspo.data.example import Example
from maspo.data.files import load_examples
from maspo.data.tasks import get_task, heldout_set, train_stream
from maspo.errors import UserError

if TYPE_CHECKING:
    from maspo.config import DataConfig


@dataclass(frozen=True)
class Splits:
    """The held-out examples and a way to start the training stream."""

    heldout: list[Example]
    new_train_stream: Callable[[], Iterator[Example]]  # each call starts from the beginning

    def train_stream(self, skip: int = 0) -> Iterator[Example]:
        """The training stream, past its first ``skip`` examples."""
        stream = self.new_train_stream()
        for _ in range(skip):
            next(stream)
        return stream

    def train_slots(self) -> PromptSlots:
        """The training stream as numbered slots (read from its beginning)."""
        return PromptSlots(self.new_train_stream())


class PromptSlots:
    """The training stream, addressed by position: ``take(start, n)`` is always the same
    ``n`` examples, whatever was taken before. The trainer takes the candidates of step
    t, draw d from a position fixed by (t, d), so runs of one seed see the same candidate
    prompts at every step whatever their policies do, and a resumed run goes on with the
    same ones."""

    def __init__(self, stream: Iterator[Example]) -> None:
        self._stream = stream
        self._read: list[Example] = []  # the stream's first examples, as far as asked

    def take(self, start: int, n: int) -> list[Example]:
        """Examples ``start`` to ``start + n - 1`` of the stream."""
        while len(self._read) < start + n:
            self._read.append(next(self._stream))
        return self._read[start:start + n]


def data_splits(data: DataConfig, seed: int) -> Splits:
    """The splits of ``data`` (a run's ``config.data``) for ``seed`` (its ``train.seed``)."""
    if data.path is None:
        task = get_task(data.task, **data.task_settings)
        heldout = heldout_set(task, seed=seed, size=data.test_size)
        return Splits(heldout, lambda: train_stream(task, seed=seed, test_size=data.test_size))
    reading = {"answer_format": data.answer_format, "answer_check": data.answer_check}
    rows = load_examples(data.path, data.fields, **reading)  # a hub id: its train split
    if data.test_path is not None:
        heldout = load_examples(data.test_path, data.fields, default_split="test", **reading)
        train_rows = rows
    else:
        heldout, train_rows = rows[:data.test_size], rows[data.test_size:]
    if not train_rows:
        raise UserError(f"data file {data.path!r} has no rows left for training after "
                        f"{data.test_size} held-out rows; lower data.test_size")
    return Splits(heldout, lambda: _epochs(train_rows))


def _epochs(rows: list[Example]) -> Iterator[Example]:
    """``rows`` endlessly, reshuffled every epoch, deterministically."""
    import torch  # (only a file's training stream needs it)

    epoch = 0
    while True:
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(epoch))
        yield from (rows[i] for i in order.tolist())
        epoch += 1


def fetch_sources(data: DataConfig) -> None:
    """Download the hub data sets ``data`` names (or find them in the cache offline),
    without reading their rows: the command line does this before a model is fetched."""
    from maspo.data.hub_datasets import fetch_dataset, parse_dataset_id

    for spec, split in ((data.path, "train"), (data.test_path, "test")):
        hub = parse_dataset_id(spec)
        if hub is not None:
            fetch_dataset(hub, split)
