"""`maspo verl-data`: verl's train/val parquet files from a local file or a hub data set id
(verl's own reward scores them in tests/integrations/test_verl_data_reward.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from maspo.cli import main
from maspo.integrations.verl_data import DATA_SOURCE, INSTRUCTION
from maspo.testing import place_in_hub_cache

PUBLISHED = Path(__file__).parents[1] / "data" / "published"
# our own rows in the shape DeepScaleR-style training sets publish: problem, answer, solution
TRAIN = [{"problem": f"Compute ${i} \\times 3$.", "answer": str(3 * i),
          "solution": f"Three times {i} is $\\boxed{{{3 * i}}}$."} for i in range(1, 7)]


def _rows(path: Path) -> list[dict]:
    return pyarrow.parquet.read_table(path).to_pylist()


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_local_file_becomes_verl_train_and_val_files(tmp_path, capsys):
    data = _write_jsonl(tmp_path / "train.jsonl", TRAIN)
    out = tmp_path / "verl"
    assert main(["verl-data", str(data), "--out", str(out), "--val-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"TRAIN_FILES={out / 'train.parquet'} VAL_FILES={out / 'val.parquet'}" in printed
    train, val = _rows(out / "train.parquet"), _rows(out / "val.parquet")
    assert len(train) == 4 and len(val) == 2  # the first 2 rows are held out, as maspo train
    first = val[0]
    assert first["data_source"] == DATA_SOURCE and first["ability"] == "math"
    assert first["prompt"] == [{"role": "user",
                                "content": f"Compute $1 \\times 3$.\n\n{INSTRUCTION}"}]
    assert first["reward_model"] == {"style": "rule", "ground_truth": "3"}
    assert first["extra_info"] == {"split": "test", "index": 0, "source": str(data),
                                   "answer": "3"}
    assert [r["reward_model"]["ground_truth"] for r in train] == ["9", "12", "15", "18"]
    assert {r["extra_info"]["split"] for r in train} == {"train"}


def test_validation_files_are_read_in_their_published_shapes(tmp_path):
    data = _write_jsonl(tmp_path / "train.jsonl", TRAIN)
    out = tmp_path / "verl"
    assert main(["verl-data", str(data), "--out", str(out), "--instruction", "",
                 "--val", str(PUBLISHED / "aime24.jsonl"),
                 "--val", str(PUBLISHED / "minerva.jsonl")]) == 0
    train, val = _rows(out / "train.parquet"), _rows(out / "val.parquet")
    assert len(train) == len(TRAIN)  # nothing held out: --val names the validation rows
    assert [r["reward_model"]["ground_truth"] for r in val] == [
        "24", "073", "104.", "75", "6 \\times 10^{5}"]  # AIME's answers, Minerva's last box
    assert val[0]["prompt"][0]["content"].startswith("Find the number")
    assert not val[0]["prompt"][0]["content"].endswith("\\boxed{}.")  # --instruction ''


def test_a_hub_data_set_id_reads_its_train_split(tmp_path, hub_cache):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(TRAIN),
                                repo / "data" / "train-00000-of-00001.parquet")
    (repo / "README.md").write_text("# rows\n")
    place_in_hub_cache(hub_cache, "test-org/math-train", repo, kind="dataset")
    out = tmp_path / "verl"
    assert main(["verl-data", "test-org/math-train", "--out", str(out),
                 "--val-size", "1"]) == 0
    val = _rows(out / "val.parquet")
    assert val[0]["extra_info"]["source"] == "test-org/math-train"
    assert len(_rows(out / "train.parquet")) == len(TRAIN) - 1


@pytest.mark.parametrize(("argv", "named"), [
    (["--val-size", "6"], "--val-size 6"),  # nothing left to train on
    (["--val-size", "0"], "--val-size"),
    (["--val", "nowhere.jsonl"], "nowhere.jsonl"),
])
def test_bad_arguments_are_one_sentence_and_write_nothing(tmp_path, capsys, argv, named):
    data = _write_jsonl(tmp_path / "train.jsonl", TRAIN)
    out = tmp_path / "verl"
    assert main(["verl-data", str(data), "--out", str(out), *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert named in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_existing_files_are_never_replaced(tmp_path, capsys):
    data = _write_jsonl(tmp_path / "train.jsonl", TRAIN)
    out = tmp_path / "verl"
    out.mkdir()
    (out / "val.parquet").write_text("earlier work")
    assert main(["verl-data", str(data), "--out", str(out), "--val-size", "1"]) == 2
    assert "val.parquet" in capsys.readouterr().err
    assert (out / "val.parquet").read_text() == "earlier work"
    assert not (out / "train.parquet").exists()


def test_a_row_with_several_accepted_answers_is_refused(tmp_path, capsys):
    data = _write_jsonl(tmp_path / "train.jsonl", TRAIN)
    assert main(["verl-data", str(data), "--out", str(tmp_path / "verl"),
                 "--val", str(PUBLISHED / "olympiadbench.json")]) == 2
    error = capsys.readouterr().err
    assert "row 2 of" in error and "2 accepted answers" in error
