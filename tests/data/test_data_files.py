"""User data on disk: JSONL, JSON, Parquet and save_to_disk folders, and their errors."""

import json
from pathlib import Path

import datasets
import pyarrow
import pyarrow.parquet
import pytest

from maspo.data import Example, load_examples
from maspo.errors import UserError

ROWS = [
    {"prompt": "What is 2 + 2?", "answer": "4", "level": 1},
    {"prompt": [{"role": "user", "content": "Half of 1?"}], "answer": "1/2", "level": 2},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_rows_become_examples_with_extra_columns(tmp_path: Path) -> None:
    examples = load_examples(write_jsonl(tmp_path / "data.jsonl", ROWS))
    assert examples == [
        Example("What is 2 + 2?", "4", "math_strict", {"level": 1}),
        Example([{"role": "user", "content": "Half of 1?"}], "1/2", "math_strict", {"level": 2}),
    ]
    assert examples[0].row() == {
        "prompt": "What is 2 + 2?",
        "answer": "4",
        "reward": "math_strict",
        "level": 1,
    }


def test_json_list_file(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ROWS))
    assert [e.answer for e in load_examples(path)] == ["4", "1/2"]


def test_parquet_with_field_mapping(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    table = pyarrow.table({"question": ["1 + 1?", "2 * 3?"], "solution": ["2", "6"]})
    pyarrow.parquet.write_table(table, path)
    examples = load_examples(path, fields={"prompt": "question", "answer": "solution"})
    assert [(e.prompt, e.answer, e.columns) for e in examples] == [
        ("1 + 1?", "2", {}),
        ("2 * 3?", "6", {}),
    ]


def test_save_to_disk_folder_and_problem_fallback(tmp_path: Path) -> None:
    dataset = datasets.Dataset.from_dict(
        {"problem": ["3 - 1?"], "answer": ["2"], "reward": ["math"]}
    )
    dataset.save_to_disk(str(tmp_path / "ds"))
    [example] = load_examples(tmp_path / "ds")
    assert (example.prompt, example.answer, example.reward) == ("3 - 1?", "2", "math")


def test_dataset_dict_folder_asks_for_one_split(tmp_path: Path) -> None:
    split = datasets.Dataset.from_dict({"prompt": ["a"], "answer": ["1"]})
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UserError, match="holds the splits train, test"):
        load_examples(tmp_path / "dd")
    assert len(load_examples(tmp_path / "dd" / "train")) == 1


def test_row_reward_field_overrides_the_default(tmp_path: Path) -> None:
    rows = [{"prompt": "p", "answer": "1", "reward": "countdown", "numbers": [1], "target": 1}]
    [example] = load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    assert example.reward == "countdown" and example.columns == {"numbers": [1], "target": 1}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "p", "answer": "1"}', "{not json"], "Line 2 of .* is not valid JSON"),
        (['{"prompt": "p"}'], "Row 1 of .* has no answer field \\('answer', 'final_answer'"),
        (['{"prompt": "p", "answer": {"a": 4}}'], "Row 1 of .* field 'answer' is dict, not a"),
        (['{"prompt": "p", "answer": "  "}'], "Row 1 of .* field 'answer' is empty"),
        (['{"answer": "1"}'], "Row 1 of .* has none of the prompt fields 'prompt', 'problem'"),
        (['{"prompt": "", "answer": "1"}'], "Row 1 of .* field 'prompt' must be a non-empty"),
        (['{"prompt": [{"role": "user"}], "answer": "1"}'], "Row 1 of .* field 'prompt'"),
        (["[1, 2]"], "Row 1 of .* is list, not an object"),
        (['{"prompt": "p", "answer": "1"}', "", '{"prompt": "p"}'], "Row 3 of .*data.jsonl"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path: Path, lines: list, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message):
        load_examples(path)


def test_mapped_field_missing_is_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "1"}, {"answer": "2"}])
    with pytest.raises(UserError, match="Row 2 of .* has no 'question' field"):
        load_examples(path, fields={"prompt": "question"})


@pytest.mark.parametrize(
    ("name", "content", "fields", "message"),
    [
        ("missing.jsonl", None, None, "does not exist"),
        ("data.csv", "a,b\n", None, "unknown extension"),
        ("empty.jsonl", "\n", None, "holds no rows"),
        ("d.jsonl", '{"prompt": "p", "answer": "1"}\n', {"question": "q"}, "key 'question'"),
        ("bad.parquet", "not parquet", None, "not a readable Parquet file"),
        ("bad.json", '{"prompt": "p"}', None, "must hold a JSON list"),
    ],
)
def test_bad_paths_and_mappings_are_user_errors(tmp_path, name, content, fields, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_examples(path, fields=fields)
