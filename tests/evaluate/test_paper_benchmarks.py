"""`maspo eval MODEL --data paper-math`: the six benchmarks of the MASPO / DGPO papers by
their hub data set ids, laid out in the suite's hub cache in each repository's published
file layout and columns (our own rows, never benchmark data), scored as one table with a
column per benchmark and the average."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from maspo.cli import main
from maspo.eval_specs import PAPER_BENCHMARKS
from maspo.testing import place_in_hub_cache, save_tiny_model

H4_README = """---
configs:
- config_name: default
  data_files:
  - split: {split}
    path: {path}
---
# {name}
"""

# id -> (files: repository path -> rows, README or None, the answers maspo must read)
REPOS = {
    "HuggingFaceH4/aime_2024": ({"data/train-00000-of-00001.parquet": [
        {"id": 60, "problem": "Find $x$ if $x + 1 = 74$.", "solution": "So $x = \\boxed{073}$.",
         "answer": "073", "url": "https://example.org/1", "year": "2024"},
        {"id": 61, "problem": "Find $y$ if $2y = 48$.", "solution": "$y = \\boxed{24}$.",
         "answer": "24", "url": "https://example.org/2", "year": "2024"}]},
        H4_README.format(split="train", path="data/train-*", name="AIME 2024"), ["073", "24"]),
    "math-ai/aime25": ({"test.jsonl": [
        {"problem": "Find $n$ with $n - 5 = 100$.", "answer": "105", "id": "0"},
        {"problem": "Find $m$ with $3m = 27$.", "answer": "9", "id": "1"}]}, None,
        ["105", "9"]),
    "math-ai/amc23": ({"test-00000-of-00001.parquet": [
        {"id": 0, "question": "What is $2^4$?", "answer": 16.0, "url": "https://example.org/a"},
        {"id": 1, "question": "What is half of 7?", "answer": 3.5,
         "url": "https://example.org/b"}]}, None, ["16", "3.5"]),
    "HuggingFaceH4/MATH-500": ({"test.jsonl": [
        {"problem": "Simplify $\\frac{6}{8}$.", "solution": "It is $\\boxed{\\frac{3}{4}}$.",
         "answer": "\\frac{3}{4}", "subject": "Prealgebra", "level": 1,
         "unique_id": "test/prealgebra/1.json"}]}, None, ["\\frac{3}{4}"]),
    "math-ai/minervamath": ({"test.jsonl": [
        {"question": "A ball falls for 2 s at $10$ m/s$^2$; its speed in m/s?",
         "answer": "20"}]}, None, ["20"]),
    "math-ai/olympiadbench": ({"test.jsonl": [
        {"id": 1, "question": "Find the positive $x$ with $x^2 = 49$.",
         "solution": ["Since $x^2 = 49$ and $x > 0$, $x = 7$."], "final_answer": ["$7$"],
         "context": None, "modality": "Text-only", "language": "English",
         "is_multiple_answer": False, "unit": None, "answer_type": "Numerical",
         "question_type": "Open-ended", "subfield": "Algebra", "subject": "Math"}]},
        H4_README.format(split="test", path="test*", name="OlympiadBench"), ["7"]),
}


def _lay_out(hub_cache: Path, root: Path) -> None:
    for repo_id, (files, readme, _) in REPOS.items():
        folder = root / repo_id.replace("/", "--")
        for name, rows in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".parquet"):
                pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
            else:
                path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        (folder / "README.md").write_text(readme or f"# {repo_id}\n")
        place_in_hub_cache(hub_cache, repo_id, folder, kind="dataset")


def test_the_suite_names_each_paper_benchmark_once():
    assert [column for column, _ in PAPER_BENCHMARKS] == [
        "AIME24", "AIME25", "AMC23", "MATH500", "Minerva", "OlympiadBench"]
    assert {spec for _, spec in PAPER_BENCHMARKS} == set(REPOS)


def test_one_eval_line_scores_a_checkpoint_on_the_six_benchmarks(hub_cache, tmp_path, capsys):
    _lay_out(hub_cache, tmp_path / "repos")
    # verl's saved HF model folder holds what save_pretrained writes: config, weights, tokenizer
    model = save_tiny_model(tmp_path / "global_step_1" / "actor" / "huggingface")
    out = tmp_path / "eval"
    assert main(["eval", str(model), "--data", "paper-math", "--n", "4", "--k", "4",
                 "--max-new-tokens", "3", "--out", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in lines
             if line.startswith("| ")]
    assert table[0] == ["metric (%)", "AIME24", "AIME25", "AMC23", "MATH500", "Minerva",
                        "OlympiadBench", "average"]
    assert [row[0] for row in table[1:4]] == ["avg@4", "pass@4", "maj@4"]
    assert table[4] == ["problems", "2", "2", "2", "1", "1", "1", "9"]

    report = json.loads((out / "eval.json").read_text())
    assert list(report["datasets"]) == [column for column, _ in PAPER_BENCHMARKS]
    for column, repo_id in PAPER_BENCHMARKS:
        assert report["datasets"][column]["source"].startswith(f"data set '{repo_id}@")  # pinned
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    answers = {}
    for sample in samples:
        answers.setdefault(sample["dataset"], []).append(sample["answer"])
    assert answers == {column: REPOS[repo_id][2] for column, repo_id in PAPER_BENCHMARKS}
    average = report["average"]["avg@4"]
    per = [report["datasets"][c]["metrics"]["avg@4"] for c, _ in PAPER_BENCHMARKS]
    assert average == pytest.approx(sum(per) / len(per))  # unweighted, as the papers average


def _readme_command(start: str) -> list[str]:
    """The README command that starts with ``start``, its continuation lines joined."""
    lines = (Path(__file__).parents[2] / "README.md").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    text = lines[first]
    while text.endswith("\\"):
        first += 1
        text = text[:-1] + lines[first]
    return shlex.split(text)[1:]  # without "maspo"


def test_readme_recipe_commands_parse_as_written():
    from maspo.cli import parse_args

    data = parse_args(_readme_command("maspo verl-data "))
    assert data.run == "verl_data" and data.val == ["HuggingFaceH4/aime_2024"]
    evaluation = parse_args(_readme_command("maspo eval checkpoints/"))
    assert evaluation.model.endswith("/actor/huggingface")  # verl's saved HF model folder
    assert (evaluation.data, evaluation.n, evaluation.k) == (["paper-math"], 32, "32")
