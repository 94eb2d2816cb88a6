"""Hub data set ids through the real huggingface_hub, against repositories laid out in the
suite's own hub cache (HF_HUB_OFFLINE=1): configs, splits and revisions pick the files,
which load as the same local file would."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from maspo.cli import main
from maspo.data import load_examples
from maspo.data.hub_datasets import splits_by_name
from maspo.errors import UserError
from maspo.run import RunDir
from maspo.testing import place_in_hub_cache, tiny_overrides

TRAIN = [{"question": f"Q{i}: how many?", "answer": f"work {i}\n#### {i},000"}
         for i in range(1, 9)]
TEST = [{"question": "T1: how many?", "answer": "so\n#### 42"},
        {"question": "T2: how many?", "answer": "so\n#### 7"}]
TWO_CONFIGS_README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
- config_name: socratic
  data_files:
  - split: train
    path: socratic/train-*
---
# A data set card
"""


def _parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def repos(hub_cache, tmp_path_factory) -> dict[str, str]:
    """Data set repositories as the Hub holds them; returns each one's main commit."""
    root = tmp_path_factory.mktemp("hub-datasets")
    plain = root / "plain"  # one config, data/train-* and data/test-* (no README configs)
    _parquet(plain / "data" / "train-00000-of-00001.parquet", TRAIN)
    _parquet(plain / "data" / "test-00000-of-00001.parquet", TEST)
    (plain / "README.md").write_text("# no YAML header\n")
    (plain / ".gitattributes").write_text("*.parquet filter=lfs\n")

    configs = root / "configs"  # GSM8K's layout: main and socratic, from the README
    _parquet(configs / "main" / "train-00000-of-00001.parquet", TRAIN[:4])
    _parquet(configs / "main" / "test-00000-of-00001.parquet", TEST)
    _parquet(configs / "socratic" / "train-00000-of-00001.parquet", TRAIN[4:])
    (configs / "README.md").write_text(TWO_CONFIGS_README)

    single = root / "single"  # one JSONL file, MATH500-style: its only split serves all
    single.mkdir()
    (single / "test.jsonl").write_text("".join(
        json.dumps({"problem": f"P{i}", "answer": str(i)}) + "\n" for i in range(3)))

    revised = root / "revised"  # branch v2 of the plain repository: other rows
    _parquet(revised / "data" / "train-00000-of-00001.parquet", TRAIN[::-1])
    _parquet(revised / "data" / "test-00000-of-00001.parquet", TEST[:1])

    return {"plain": place_in_hub_cache(hub_cache, "test-org/plain", plain, "dataset"),
            "configs": place_in_hub_cache(hub_cache, "test-org/configs", configs, "dataset"),
            "single": place_in_hub_cache(hub_cache, "test-org/single", single, "dataset"),
            "v2": place_in_hub_cache(hub_cache, "test-org/plain", revised, "dataset",
                                     branch="v2")}


def _questions(spec: str, **options) -> list[str]:
    return [e.prompt.split(":")[0] for e in load_examples(spec, **options)]


def test_a_repo_with_train_and_test_files_needs_neither_config_nor_split(repos) -> None:
    examples = load_examples("test-org/plain")
    assert [(e.prompt[:2], e.answer) for e in examples[:2]] == [("Q1", "1000"), ("Q2", "2000")]
    assert len(examples) == len(TRAIN) and {e.reward for e in examples} == {"math_strict"}
    assert _questions("test-org/plain", default_split="test") == ["T1", "T2"]
    assert _questions("test-org/plain:split=test") == ["T1", "T2"]
    with pytest.raises(UserError) as refused:  # two splits, neither the one asked for
        load_examples("test-org/plain", default_split="validation")
    assert str(refused.value) == (
        "data set 'test-org/plain' has no 'validation' split in config 'default'; name one of "
        "train, test, e.g. 'test-org/plain:config=default,split=train'.")


def test_configs_from_the_readme_are_named_or_refused_with_the_choices(repos) -> None:
    with pytest.raises(UserError) as refused:
        load_examples("test-org/configs")
    assert str(refused.value) == ("data set 'test-org/configs' has the configs main, socratic; "
                                  "name one, e.g. 'test-org/configs:config=main'.")
    assert _questions("test-org/configs:config=main") == ["Q1", "Q2", "Q3", "Q4"]
    assert _questions("test-org/configs:config=socratic") == ["Q5", "Q6", "Q7", "Q8"]
    assert _questions("test-org/configs:config=main,split=test") == ["T1", "T2"]
    with pytest.raises(UserError, match=r"has no split 'validation' in config 'main'; it has "
                                        r"train, test\.$"):
        load_examples("test-org/configs:config=main,split=validation")
    with pytest.raises(UserError, match=r"has no config 'mian'; it has main, socratic\.$"):
        load_examples("test-org/configs:config=mian")


def test_a_repo_with_one_split_serves_it_for_training_and_held_out(repos) -> None:
    assert _questions("test-org/single") == ["P0", "P1", "P2"]
    assert _questions("test-org/single", default_split="test") == ["P0", "P1", "P2"]


def test_a_revision_reads_that_revision(repos) -> None:
    assert _questions("test-org/plain@v2")[:2] == ["Q8", "Q7"]
    assert _questions(f"test-org/plain@{repos['plain']}")[:2] == ["Q1", "Q2"]


def test_a_missing_data_set_is_one_sentence(repos, hub_cache) -> None:
    with pytest.raises(UserError) as missed:
        load_examples("test-org/no-such-set:config=main")
    assert str(missed.value) == (
        f"data set 'test-org/no-such-set:config=main' is neither a local path nor in the "
        f"Hugging Face cache '{hub_cache}', and HF_HUB_OFFLINE is set; download it once "
        "online, or point HF_HUB_CACHE (or HF_HOME) at a cache that holds it.")


def test_a_bad_row_names_its_file_in_the_repository(hub_cache, tmp_path) -> None:
    folder = tmp_path / "bad"
    _parquet(folder / "data" / "train-00000-of-00001.parquet",
             [{"question": "q", "answer": "4"}, {"question": "q", "answer": ""}])
    commit = place_in_hub_cache(hub_cache, "test-org/bad-rows", folder, "dataset")
    with pytest.raises(UserError) as refused:
        load_examples("test-org/bad-rows")
    assert str(refused.value) == (
        "Row 2 of data/train-00000-of-00001.parquet in data set 'test-org/bad-rows@"
        f"{commit}:config=default,split=train' field 'answer' is empty.")


@pytest.mark.parametrize(("files", "splits"), [
    (["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
      "data/test-00000-of-00001.parquet"],
     {"train": ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"],
      "test": ["data/test-00000-of-00001.parquet"]}),
    (["train.jsonl", "validation.jsonl", "test.jsonl"],
     {"train": ["train.jsonl"], "validation": ["validation.jsonl"], "test": ["test.jsonl"]}),
    (["gsm8k_test.json", "latest.json"], {"test": ["gsm8k_test.json"]}),  # not "la-test"
    (["eval/part1.parquet", "dev.jsonl"], {"validation": ["dev.jsonl"],
                                           "test": ["eval/part1.parquet"]}),
    (["problems.jsonl"], {"train": ["problems.jsonl"]}),  # no split word: all of it is train
])
def test_splits_are_read_from_file_and_folder_names(files, splits) -> None:
    assert splits_by_name(files) == splits


def test_train_and_eval_on_hub_data_sets_pin_and_name_them(repos, tiny_model_dir, tmp_path,
                                                           capsys) -> None:
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, run, **{
        "data.path": "test-org/plain", "data.test_path": "test-org/plain",
        "data.answer_check": "lenient", "train.steps": 1, "reward.functions": "[]"})
    assert main(["train", "--no-progress", *overrides]) == 0
    config = (run / "config.yaml").read_text()
    assert f"path: test-org/plain@{repos['plain']}\n" in config
    assert f"test_path: test-org/plain@{repos['plain']}\n" in config
    summary = RunDir(run).read_summary()
    assert summary.eval_prompts == len(TEST)  # the test split held out, whole

    out = tmp_path / "eval"
    assert main(["eval", str(tiny_model_dir), "--data", "test-org/configs:config=main",
                 "--n", "1", "--max-new-tokens", "2", "--out", str(out),
                 "--no-progress"]) == 0
    [dataset] = json.loads((out / "eval.json").read_text())["datasets"].values()
    assert dataset["problems"] == len(TEST)  # eval takes the test split
    assert dataset["source"] == (f"data set 'test-org/configs@{repos['configs']}:config=main,"
                                 "split=test'")
    capsys.readouterr()
