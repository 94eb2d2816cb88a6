"""User prompt files: JSONL, JSON (a list of objects), Parquet, a `save_to_disk` folder, or
the files of a data set on the Hugging Face Hub (`maspo.data.hub_datasets`).

Benchmark files load as their authors or the common harnesses publish them:

| format            | prompt field | reference taken from                                   |
|-------------------|--------------|--------------------------------------------------------|
| GSM8K             | `question`   | `answer`'s final line `#### 1,200` -> `1200`           |
| MATH / Minerva    | `problem`    | the last `\\boxed{}` of `solution`                      |
| MATH500           | `problem`    | `answer` (its `solution` stays a column)               |
| AIME              | `problem`    | `answer`, an int (`73`) or a string (`"073"`)          |
| AMC23             | `problem` (`question`: the same) | `answer`, a float (`27.0` -> `27`) |
| OlympiadBench     | `question`   | `final_answer`, a list: any element is correct         |

The prompt is the row's `prompt`, `problem` or `question` field; the answer its `answer`,
`final_answer` or, failing both, `solution` field. `fields={"prompt": ..., "answer": ...}`
names them instead. How the answer field is read is `answer_format`:
- "auto" (default): a final line `#### <answer>` is GSM8K's answer; else the last
  `\\boxed{}` if there is one; else the value as it is. Numbers and lists are values.
  A `solution` field must hold a `\\boxed{}` or `####` answer.
- "plain": the value as it is; "gsm8k": required `####` line; "boxed": required box.

Nothing is guessed: a row whose reading is ambiguous (two prompt fields that differ, an
`answer` and a `final_answer` that read differently, a `####` answer in `answer` while
another field is mapped, a worked solution with no marked final answer, a GSM8K file
whose rows disagree) is a UserError naming the row and the option that resolves it;
duplicate fields that agree are one field. A string `reward` field picks that row's reward,
else `answer_check` does ("strict" for files: only the final `\\boxed{}` counts; "lenient":
also the stated answer or the last number, see `maspo.rewards.extract`); every other
field is passed to reward functions. Any bad row is a UserError naming the file, the row
number (1-based) and the field. Every decision in full: docs/data-formats.md.
"""

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maspo.data.example import Example, Prompt
from maspo.errors import UserError
from maspo.rewards.extract import last_boxed

MAPPABLE_FIELDS = ("prompt", "answer")
PROMPT_FIELDS = ("prompt", "problem", "question")  # published names of the problem text
ANSWER_FIELDS = ("answer", "final_answer")  # published names of a final answer
SOLUTION_FIELD = "solution"  # a worked solution; its final answer is marked
REWARD_FIELD = "reward"
ANSWER_FORMATS = ("auto", "plain", "gsm8k", "boxed")
ANSWER_CHECKS = {"strict": "math_strict", "lenient": "math"}  # -> reward name
FILE_ANSWER_CHECK = "strict"  # the papers score only the final \boxed{} (see README)
# Unmarked answer text longer than this (or spanning lines) is a worked solution, not a
# final answer; MATH's longest final answers (matrices, intervals) are ~100 characters.
MAX_PLAIN_ANSWER_CHARS = 300
_GSM8K_LINE = re.compile(r"(?:^|\n)####[ \t]*([^\n]*?)\s*$")
_GROUPED_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def _read_jsonl(path: Path) -> list[tuple[int, Any]]:
    rows = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise UserError(
                    f"Line {number} of {path} is not valid JSON ({error.msg})."
                ) from None
    return rows


def _read_json(path: Path) -> list[tuple[int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}).") from None
    if not isinstance(data, list):
        raise UserError(f"{path} must hold a JSON list of objects, one per row.")
    return list(enumerate(data, start=1))


def _read_parquet(path: Path) -> list[tuple[int, Any]]:
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise UserError(f"{path} is not a readable Parquet file ({error}).") from None
    return list(enumerate(table.to_pylist(), start=1))


def _read_dataset_dir(path: Path) -> list[tuple[int, Any]]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises FileNotFoundError and others
        raise UserError(f"{path} is not a dataset saved with save_to_disk ({error}).") from None
    if isinstance(dataset, datasets.DatasetDict):
        splits = ", ".join(dataset)
        raise UserError(f"{path} holds the splits {splits}; point to one split's folder.")
    return list(enumerate(dataset.to_list(), start=1))


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}


def _prompt(row: dict, field: str | None, where: str) -> tuple[str, Prompt]:
    if field is None:
        present = [name for name in PROMPT_FIELDS if name in row]
        if not present:
            raise UserError(f"{where} has none of the prompt fields 'prompt', 'problem', "
                            "'question'; name it with data.fields.prompt (--prompt-field).")
        if any(row[name] != row[present[0]] for name in present[1:]):
            both = " and ".join(repr(name) for name in present)
            raise UserError(f"{where} has both {both}, and they differ; name the prompt with "
                            "data.fields.prompt (--prompt-field).")
        field = present[0]  # the same text in each (AMC23's problem and question) is one prompt
    elif field not in row:
        raise UserError(f"{where} has no {field!r} field (the prompt).")
    value = row[field]
    if isinstance(value, str) and value.strip():
        return field, value
    if isinstance(value, list) and value and all(_is_message(m) for m in value):
        return field, [{"role": m["role"], "content": m["content"]} for m in value]
    raise UserError(
        f"{where} field {field!r} must be a non-empty string or a list of "
        "{'role': ..., 'content': ...} messages."
    )


def _is_message(message: object) -> bool:
    return (
        isinstance(message, dict)
        and isinstance(message.get("role"), str)
        and isinstance(message.get("content"), str)
    )


def check_answer_settings(answer_format: str, answer_check: str | None) -> None:
    """UserError for an unknown `data.answer_format` or `data.answer_check`."""
    if answer_format not in ANSWER_FORMATS:
        raise UserError(f"Answer format {answer_format!r} is not one of "
                        f"{', '.join(ANSWER_FORMATS)} (data.answer_format / --answer-format).")
    if answer_check is not None and answer_check not in ANSWER_CHECKS:
        raise UserError(f"Answer check {answer_check!r} is not one of "
                        f"{', '.join(ANSWER_CHECKS)} (data.answer_check / --answer-check).")


def _answer_field(row: dict, mapped: str | None, answer_format: str, where: str) -> str:
    """The field holding the row's answer (see the module doc), refusing ambiguous rows."""
    if mapped is not None:
        if mapped not in row:
            raise UserError(f"{where} has no {mapped!r} field (the answer).")
        other = row.get("answer")
        if (answer_format == "auto" and mapped != "answer" and isinstance(other, str)
                and _GSM8K_LINE.search(other)):
            raise UserError(f"{where} has a GSM8K '#### ' answer in 'answer' but "
                            f"data.fields.answer maps {mapped!r}; drop the mapping, or set "
                            "data.answer_format=plain (--answer-format) to keep it.")
        return mapped
    present = [name for name in ANSWER_FIELDS if name in row]
    if len(present) > 1:  # both: one reference if they read the same (27.0 and "27")
        readings = {_reading(row, name, answer_format, where) for name in present}
        if None in readings or len(readings) > 1:
            raise UserError(f"{where} has both 'answer' and 'final_answer', and they differ; "
                            "name the reference with data.fields.answer (--answer-field).")
    if present:
        field = present[0]
        if SOLUTION_FIELD in row and answer_format == "auto" and isinstance(row[field], str):
            text = row[field]
            if _GSM8K_LINE.search(text) or _reads_like_solution(text):
                raise UserError(f"{where} has a worked solution in both {field!r} and "
                                f"{SOLUTION_FIELD!r}; name the reference with "
                                "data.fields.answer (--answer-field).")
        return field
    if SOLUTION_FIELD in row:
        return SOLUTION_FIELD
    raise UserError(f"{where} has no answer field ('answer', 'final_answer' or 'solution'); "
                    "name it with data.fields.answer (--answer-field).")


def _reading(row: dict, field: str, answer_format: str, where: str) -> object:
    """The reference ``field`` gives, or None where it reads as none."""
    try:
        return _answer(row, field, answer_format, where, marked=False)[0]
    except UserError:
        return None


def _reads_like_solution(text: str) -> bool:
    text = text.strip()
    return "\n" in text or len(text) > MAX_PLAIN_ANSWER_CHARS


def _number(value: int | float, where: str) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UserError(f"{where} is {value}, not an answer.")
        if value.is_integer():
            return str(int(value))  # AMC23's 27.0 is the integer 27
        return repr(value)
    return str(value)


def _reference(value: object, field: str, answer_format: str, where: str,
               marked: bool) -> tuple[str, str]:
    """(reference, how it was read: "gsm8k" | "boxed" | "plain") of one answer value;
    `marked`: in auto format, the final answer must be marked (an unmapped `solution`)."""
    where = f"{where} field {field!r}"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where} is {type(value).__name__}, not a string, a number or a "
                        "list of them.")
    if not isinstance(value, str):
        if answer_format in ("gsm8k", "boxed"):
            raise UserError(f"{where} is a number, not text with a {answer_format} answer; "
                            "set data.answer_format=auto (--answer-format).")
        return _number(value, where), "plain"
    if not value.strip():
        raise UserError(f"{where} is empty.")
    gsm8k = _GSM8K_LINE.search(value) if answer_format in ("auto", "gsm8k") else None
    boxed = last_boxed(value) if answer_format in ("auto", "boxed") else None
    if answer_format == "auto" and gsm8k and boxed is not None:
        raise UserError(f"{where} has both a '#### ' line and a \\boxed{{}} answer; choose "
                        "with data.answer_format=gsm8k or boxed (--answer-format).")
    if gsm8k:
        answer = gsm8k.group(1).strip()
        if _GROUPED_NUMBER.fullmatch(answer):
            answer = answer.replace(",", "")  # GSM8K writes 1,200 for 1200
        kind = "gsm8k"
    elif boxed is not None:
        answer, kind = boxed, "boxed"
    elif answer_format == "gsm8k":
        raise UserError(f"{where} has no final line '#### <answer>' (data.answer_format=gsm8k).")
    elif answer_format == "boxed":
        raise UserError(f"{where} has no \\boxed{{}} answer (data.answer_format=boxed).")
    else:
        if answer_format == "auto" and (marked or _reads_like_solution(value)):
            raise UserError(f"{where} reads like a worked solution with no \\boxed{{}} or "
                            "'#### ' final answer; map the final-answer field with "
                            "data.fields.answer, or set data.answer_format=plain to use it "
                            "whole.")
        answer, kind = value, "plain"
    answer = answer.strip().strip("$").strip()
    if not answer:
        raise UserError(f"{where} has an empty final answer.")
    return answer, kind


def _answer(row: dict, field: str, answer_format: str, where: str,
            marked: bool) -> tuple[str | tuple[str, ...], str]:
    """(reference, or a tuple of references any of which is correct; how it was read)."""
    value = row[field]
    if not isinstance(value, (list, tuple)):
        return _reference(value, field, answer_format, where, marked)
    if not value:
        raise UserError(f"{where} field {field!r} is an empty list.")
    read = [_reference(item, field, answer_format, where, marked) for item in value]
    answers = tuple(dict.fromkeys(answer for answer, _ in read))  # in order, no repeats
    return (answers[0] if len(answers) == 1 else answers), read[0][1]


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """(row number, row) of every row of the local file or ``save_to_disk`` folder ``path``."""
    if path.is_dir():
        return _read_dataset_dir(path)
    if path.suffix in READERS:
        return READERS[path.suffix](path)
    raise UserError(
        f"Data file {path} has an unknown extension; use .jsonl, .json, .parquet "
        "or a save_to_disk folder."
    )


def _sources(path: str | Path, default_split: str) -> list[tuple[str, list[tuple[int, Any]]]]:
    """(how rows are named, rows) of each file ``path`` stands for: itself, or the files
    of a hub data set id's config and split (``maspo.data.hub_datasets``)."""
    local = Path(path).expanduser()
    if local.exists():
        return [(str(local), read_rows(local))]
    from maspo.data.hub_datasets import fetch_dataset, parse_dataset_id

    hub = parse_dataset_id(str(path))
    if hub is None:
        raise UserError(f"Data path {path} does not exist.")
    data = fetch_dataset(hub, default_split)
    return [(f"{name} in {data.hub.label}", READERS[Path(name).suffix](file))
            for file, name in data.files]


def load_examples(
    path: str | Path,
    fields: Mapping[str, str] | None = None,
    reward: str | None = None,
    answer_format: str = "auto",
    answer_check: str | None = None,
    default_split: str = "train",
) -> list[Example]:
    """Every row of the file or dataset folder at `path`, or of a hub data set id's files
    (``org/name[@revision][:config=C][,split=S]``, see ``maspo.data.hub_datasets``), as an
    Example (see module doc).

    `reward` names every row's reward (a row's `reward` field still wins); by default it
    follows `answer_check` (None: "strict", the `math_strict` reward). `default_split` is the
    split a hub id without one stands for: "train" to train on, "test" to hold out.
    """
    fields = dict(fields or {})
    for key in fields:
        if key not in MAPPABLE_FIELDS:
            raise UserError(
                f"Field mapping key {key!r} is not one of {', '.join(MAPPABLE_FIELDS)}."
            )
    check_answer_settings(answer_format, answer_check)
    if reward is None:
        reward = ANSWER_CHECKS[answer_check or FILE_ANSWER_CHECK]
    examples = []
    first: tuple[str, int, bool] | None = None  # (source, row number, read as GSM8K) of row 1
    for source, rows in _sources(path, default_split):
        for number, row in rows:
            where = f"Row {number} of {source}"
            if not isinstance(row, dict):
                raise UserError(f"{where} is {type(row).__name__}, not an object with fields.")
            prompt_field, prompt = _prompt(row, fields.get("prompt"), where)
            answer_field = _answer_field(row, fields.get("answer"), answer_format, where)
            marked = "answer" not in fields and answer_field == SOLUTION_FIELD
            answer, kind = _answer(row, answer_field, answer_format, where, marked)
            if first is None:
                first = (source, number, kind == "gsm8k")
            elif answer_format == "auto" and first[2] != (kind == "gsm8k"):
                has = "has a" if kind == "gsm8k" else "has no"
                of = "" if first[0] == source else f" of {first[0]}"
                raise UserError(f"{where} {has} GSM8K '#### ' answer line, unlike row "
                                f"{first[1]}{of}; fix the row or set data.answer_format "
                                "(--answer-format).")
            row_reward = row.get(REWARD_FIELD, reward)
            if not isinstance(row_reward, str) or not row_reward:
                raise UserError(f"{where} field {REWARD_FIELD!r} must be a reward name string.")
            used = {prompt_field, answer_field, REWARD_FIELD}
            columns = {key: value for key, value in row.items() if key not in used}
            examples.append(Example(prompt, answer, row_reward, columns))
    if not examples:
        raise UserError(f"Data path {path} holds no rows.")
    return examples
