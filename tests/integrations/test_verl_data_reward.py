"""The parquet files `maspo verl-data` writes, read by verl itself: its RL data set loads the
rows and its default reward (picked by data_source) scores a boxed answer against each
row's ground truth, for training rows and published benchmark files alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integration_support import require

pytestmark = [pytest.mark.integration, pytest.mark.verl]

require("verl")
from omegaconf import OmegaConf  # noqa: E402  (after the skip above)

from maspo.cli import main  # noqa: E402
from maspo.testing import tiny_tokenizer  # noqa: E402

PUBLISHED = Path(__file__).parents[1] / "data" / "published"
TRAIN = [{"problem": f"Compute ${i} \\times 3$.", "answer": str(3 * i)} for i in range(1, 5)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("verl-data")
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in TRAIN))
    out = work / "verl"
    assert main(["verl-data", str(data), "--out", str(out),
                 "--val", str(PUBLISHED / "math500.jsonl"),
                 "--val", str(PUBLISHED / "amc23.jsonl")]) == 0
    return out


@pytest.mark.parametrize("name", ["train.parquet", "val.parquet"])
def test_verls_rl_dataset_reads_the_rows(files, tmp_path, name):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create({"max_prompt_length": 512, "cache_dir": str(tmp_path),
                               "filter_overlong_prompts": True})
    dataset = RLHFDataset(str(files / name), tiny_tokenizer(), config)
    rows = len(TRAIN) if name == "train.parquet" else 3 + 2  # MATH500's 3, AMC23's 2
    assert len(dataset) == rows  # none filtered as overlong: the chat template rendered
    first = dataset[0]
    assert first["raw_prompt"][0]["role"] == "user"
    assert first["raw_prompt"][0]["content"].endswith("within \\boxed{}.")
    assert first["data_source"] == "lighteval/MATH" and first["ability"] == "math"


@pytest.mark.parametrize("name", ["train.parquet", "val.parquet"])
def test_verls_default_reward_scores_a_boxed_answer_against_each_row(files, name):
    import pyarrow.parquet
    from verl.utils.reward_score import default_compute_score

    rows = pyarrow.parquet.read_table(files / name).to_pylist()
    for row in rows:
        truth = row["reward_model"]["ground_truth"]
        right = f"Working it out step by step, the answer is $\\boxed{{{truth}}}$."
        wrong = "Working it out step by step, the answer is $\\boxed{-1234}$."
        assert default_compute_score(row["data_source"], right, truth) == 1.0, truth
        assert default_compute_score(row["data_source"], wrong, truth) == 0.0, truth
    if name == "val.parquet":  # MATH500's text answers and AMC23's float answers as read
        assert [r["reward_model"]["ground_truth"] for r in rows] == [
            "4", "62.5\\%", "\\textbf{(C) }18", "27", "2.5"]
