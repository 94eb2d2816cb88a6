"""verl's training and validation parquet files from a data set id or a local file
(``maspo verl-data``): the first step of the verl recipe (examples/verl/).

Rows are read by maspo's own readers (``maspo.data.load_examples``: GSM8K, MATH, MATH500,
AIME, AMC23, Minerva, OlympiadBench, DeepScaleR-style ``problem``/``answer`` files, hub
ids) and written in the layout of verl's RL data set and its default reward
(``verl.utils.reward_score.default_compute_score``, which picks the scorer by
``data_source``):

    data_source   "lighteval/MATH": verl scores the last \\boxed{} of the response
                  against ground_truth (its math_reward: 1 if equivalent, else 0)
    prompt        [{"role": "user", "content": <problem> + INSTRUCTION}]  (verl applies the
                  model's chat template itself)
    ability       "math"
    reward_model  {"style": "rule", "ground_truth": <the reference answer>}
    extra_info    {"split", "index", "source", "answer"}

Every row gets the same ``data_source``, so verl's validation metrics pool the validation
sets under it; score each benchmark separately with ``maspo eval`` (the paper's Avg@32).
Nothing here imports verl: writing the files needs only pyarrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maspo.data import Example, load_examples
from maspo.errors import UserError

DATA_SOURCE = "lighteval/MATH"  # verl's default reward: last \boxed{} against ground_truth
ABILITY = "math"
# DeepSeek's usage note for the R1-Distill models: no system prompt, this line in the user turn.
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
TRAIN_FILE, VAL_FILE = "train.parquet", "val.parquet"
DEFAULT_VAL_SIZE = 100  # held out from the training rows when no --val is given


@dataclass(frozen=True)
class Written:
    """What ``write_verl_files`` wrote: the two files and their row counts."""

    train: Path
    val: Path
    train_rows: int
    val_rows: int


def verl_row(example: Example, split: str, index: int, source: str,
             instruction: str = INSTRUCTION) -> dict[str, Any]:
    """One row of verl's RL parquet layout (module docstring) for ``example``."""
    where = f"row {index + 1} of {source}"
    if isinstance(example.answer, tuple):
        if len(example.answer) != 1:
            raise UserError(f"{where} has {len(example.answer)} accepted answers; verl's math "
                            "reward compares against one ground truth, so keep one per row")
        answer = example.answer[0]
    else:
        answer = example.answer
    if isinstance(example.prompt, str):
        text = f"{example.prompt.strip()}\n\n{instruction}" if instruction else example.prompt
        messages = [{"role": "user", "content": text}]
    else:  # already chat messages: written as they are
        messages = [{"role": m["role"], "content": m["content"]} for m in example.prompt]
    return {"data_source": DATA_SOURCE, "prompt": messages, "ability": ABILITY,
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"split": split, "index": index, "source": source,
                           "answer": answer}}


def _rows(examples: list[Example], split: str, source: str,
          instruction: str) -> list[dict[str, Any]]:
    return [verl_row(e, split, i, source, instruction) for i, e in enumerate(examples)]


def write_verl_files(train: str, out: str | Path, *, val: list[str] | None = None,
                     val_size: int = DEFAULT_VAL_SIZE, instruction: str = INSTRUCTION,
                     fields: dict[str, str] | None = None,
                     answer_format: str = "auto") -> Written:
    """Write ``out/train.parquet`` and ``out/val.parquet``.

    ``train`` is a local file or a hub data set id (its ``train`` split by default). The
    validation rows are those of each ``val`` spec (a hub id's ``test`` split by default),
    else the first ``val_size`` training rows, which then leave the training file (as
    ``maspo train`` holds out ``data.test_size`` rows). Existing files are never replaced.
    """
    import pyarrow
    import pyarrow.parquet

    out = Path(out).expanduser()
    paths = (out / TRAIN_FILE, out / VAL_FILE)
    for path in paths:
        if path.exists():
            raise UserError(f"{str(path)!r} already exists; choose another --out (nothing "
                            "was written)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file, not a folder")
    reading = {"fields": fields, "answer_format": answer_format}
    examples = load_examples(train, **reading)
    if val:
        train_rows = _rows(examples, "train", train, instruction)
        val_rows = [row for spec in val for row in _rows(
            load_examples(spec, default_split="test", **reading), "test", spec, instruction)]
    else:
        if val_size < 1:
            raise UserError(f"--val-size must be >= 1, got {val_size}")
        if val_size >= len(examples):
            raise UserError(f"{train!r} has {len(examples)} rows, too few to hold out "
                            f"--val-size {val_size} and still train; lower it or pass --val")
        val_rows = _rows(examples[:val_size], "test", train, instruction)
        train_rows = _rows(examples[val_size:], "train", train, instruction)
    tables = [pyarrow.Table.from_pylist(rows) for rows in (train_rows, val_rows)]
    out.mkdir(parents=True, exist_ok=True)
    for table, path in zip(tables, paths, strict=True):
        pyarrow.parquet.write_table(table, path)
    return Written(*paths, len(train_rows), len(val_rows))
