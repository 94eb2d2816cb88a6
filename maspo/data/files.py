"""User prompt files: JSONL, JSON (a list of objects), Parquet, or a `save_to_disk` folder.

Each row needs a prompt (field `prompt`, else `problem`) and a string answer (field
`answer`); `fields={"prompt": "question", "answer": "solution"}` renames them. A string
`reward` field picks that row's reward; every other field is passed to reward functions.
Any bad row is a UserError naming the file, the row number (1-based) and the field.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maspo.data.example import Example, Prompt
from maspo.errors import UserError

MAPPABLE_FIELDS = ("prompt", "answer")
PROMPT_FALLBACK_FIELD = "problem"
REWARD_FIELD = "reward"


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
        field = "prompt" if "prompt" in row else PROMPT_FALLBACK_FIELD
        if field not in row:
            raise UserError(f"{where} has neither a 'prompt' nor a 'problem' field.")
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


def _answer(row: dict, field: str, where: str) -> str:
    if field not in row:
        raise UserError(f"{where} has no {field!r} field (the answer).")
    value = row[field]
    if not isinstance(value, str):
        raise UserError(f"{where} field {field!r} is {type(value).__name__}, not a string.")
    if not value.strip():
        raise UserError(f"{where} field {field!r} is empty.")
    return value


def load_examples(
    path: str | Path, fields: Mapping[str, str] | None = None, reward: str = "math"
) -> list[Example]:
    """Every row of the file or dataset folder at `path` as an Example (see module doc)."""
    path = Path(path)
    fields = dict(fields or {})
    for key in fields:
        if key not in MAPPABLE_FIELDS:
            raise UserError(
                f"Field mapping key {key!r} is not one of {', '.join(MAPPABLE_FIELDS)}."
            )
    if not path.exists():
        raise UserError(f"Data path {path} does not exist.")
    if path.is_dir():
        rows = _read_dataset_dir(path)
    elif path.suffix in READERS:
        rows = READERS[path.suffix](path)
    else:
        raise UserError(
            f"Data file {path} has an unknown extension; use .jsonl, .json, .parquet "
            "or a save_to_disk folder."
        )
    examples = []
    for number, row in rows:
        where = f"Row {number} of {path}"
        if not isinstance(row, dict):
            raise UserError(f"{where} is {type(row).__name__}, not an object with fields.")
        prompt_field, prompt = _prompt(row, fields.get("prompt"), where)
        answer_field = fields.get("answer", "answer")
        answer = _answer(row, answer_field, where)
        row_reward = row.get(REWARD_FIELD, reward)
        if not isinstance(row_reward, str) or not row_reward:
            raise UserError(f"{where} field {REWARD_FIELD!r} must be a reward name string.")
        used = {prompt_field, answer_field, REWARD_FIELD}
        columns = {key: value for key, value in row.items() if key not in used}
        examples.append(Example(prompt, answer, row_reward, columns))
    if not examples:
        raise UserError(f"Data path {path} holds no rows.")
    return examples
