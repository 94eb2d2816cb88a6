"""`maspo eval` end to end on a tiny real model, run and checkpoint; data errors named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from maspo.cli import main
from maspo.evaluate import verdict_metrics

ROWS = [{"problem": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in
        [(1, 2), (3, 4), (5, 1), (2, 2), (6, 3)]]


def write_jsonl(path, rows: list[dict]):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _samples(out) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_eval_writes_table_json_csv_and_samples_for_two_datasets(tiny_model_dir, tmp_path,
                                                                 capsys):
    data = write_jsonl(tmp_path / "sums.jsonl", ROWS)
    out = tmp_path / "res"
    code = main(["eval", str(tiny_model_dir), "--data", "arithmetic", "--data", str(data),
                 "--n", "4", "--k", "1,2,4", "--test-size", "3", "--max-new-tokens", "5",
                 "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    table = [line.split("|")[1:-1] for line in printed.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in table[0]] == ["metric (%)", "arithmetic", "sums", "average"]
    assert [row[0].strip() for row in table[1:]] == [
        "avg@4", "pass@1", "pass@2", "pass@4", "maj@1", "maj@2", "maj@4", "problems",
        "timeouts", "errors"]

    report = json.loads((out / "eval.json").read_text())
    assert list(report["datasets"]) == ["arithmetic", "sums"]
    assert report["datasets"]["arithmetic"]["problems"] == 3
    assert report["datasets"]["sums"]["problems"] == 5
    rows = {r["metric"]: r for r in csv.DictReader((out / "eval.csv").open())}
    assert list(rows["avg@4"]) == ["metric", "arithmetic", "sums", "average"]
    assert rows["problems"] == {"metric": "problems", "arithmetic": "3", "sums": "5",
                                "average": "8"}
    assert float(rows["pass@2"]["sums"]) == pytest.approx(
        report["datasets"]["sums"]["metrics"]["pass@2"])
    assert report["datasets"]["sums"]["verifier"] == {"timeouts": 0, "errors": 0}

    samples = _samples(out)
    assert len(samples) == 3 + 5 and all(len(s["completions"]) == 4 for s in samples)
    for name in ("arithmetic", "sums"):  # the reported numbers follow from the saved verdicts
        mine = [s for s in samples if s["dataset"] == name]
        again = verdict_metrics([s["correct"] for s in mine], [s["votes"] for s in mine],
                                [1, 2, 4])
        assert report["datasets"][name]["metrics"] == pytest.approx(again)
    assert report["average"]["avg@4"] == pytest.approx(
        (report["datasets"]["arithmetic"]["metrics"]["avg@4"]
         + report["datasets"]["sums"]["metrics"]["avg@4"]) / 2)


def test_run_final_model_and_its_last_checkpoint_give_the_same_samples(tiny_run, tmp_path):
    args = ["--n", "2", "--seed", "5", "--no-progress"]
    assert main(["eval", str(tiny_run), "--out", str(tmp_path / "a"), *args]) == 0
    last = tiny_run / "checkpoints" / "step-000002"
    assert main(["eval", str(last), "--out", str(tmp_path / "b"), *args]) == 0
    a, b = _samples(tmp_path / "a"), _samples(tmp_path / "b")
    assert len(a) == 6  # the run's own held-out set (data.test_size = 6)
    assert [s["completions"] for s in a] == [s["completions"] for s in b]
    # the first checkpoint holds other weights: its samples differ somewhere
    first = tiny_run / "checkpoints" / "step-000001"
    assert main(["eval", str(first), "--out", str(tmp_path / "c"), *args]) == 0
    assert [s["completions"] for s in _samples(tmp_path / "c")] != [s["completions"] for s in a]


def test_greedy_decoding_is_deterministic(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sums.jsonl", ROWS)
    for name, seed in (("a", "0"), ("b", "1")):
        assert main(["eval", str(tiny_model_dir), "--data", str(data), "--greedy",
                     "--seed", seed, "--max-new-tokens", "4", "--out", str(tmp_path / name),
                     "--no-progress"]) == 0
    a, b = _samples(tmp_path / "a"), _samples(tmp_path / "b")
    assert all(len(s["completions"]) == 1 for s in a)
    assert [s["completions"] for s in a] == [s["completions"] for s in b]


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(("row", "extra", "named", "row_number"), [
    ({"problem": "1 + 1?"}, [], "'answer'", 3),
    ({"problem": "1 + 1?", "question": "2 + 2?", "answer": "2"}, [], "'question'", 3),
    ({"problem": "1 + 1?", "answer": True}, [], "'answer'", 3),
    ({"problem": "1 + 1?", "answer": "w\n#### 2"}, [], "--answer-format", 3),
    ({"problem": "1 + 1?", "answer": "2"}, ["--answer-field", "solution"], "'solution'", 1),
    ({"question": "1 + 1?", "answer": "2"}, ["--prompt-field", "question"], "'question'", 1),
])
def test_dataset_field_errors_name_the_file_row_and_field(tiny_model_dir, tmp_path, capsys,
                                                          row, extra, named, row_number):
    data = write_jsonl(tmp_path / "bad.jsonl", ROWS[:2] + [row])
    err = _error(capsys, ["eval", str(tiny_model_dir), "--data", str(data), *extra])
    assert named in err and "bad.jsonl" in err and f"Row {row_number} " in err


@pytest.mark.parametrize(("argv", "named"), [
    (["--data", "sudoku"], "'sudoku'"),
    (["--data", "arithmetic:digitz=2"], "'digitz'"),
    (["--data", "arithmetic", "--n", "4", "--k", "1,8"], "8"),
    (["--data", "arithmetic", "--greedy", "--n", "4"], "--greedy"),
    (["--data", "arithmetic", "--top-p", "0"], "--top-p"),
    (["--data", "arithmetic", "--answer-check", "lenient"], "--answer-check"),
    ([], "--data"),
])
def test_bad_eval_arguments_are_one_sentence(tiny_model_dir, capsys, argv, named):
    assert named in _error(capsys, ["eval", str(tiny_model_dir), *argv])


def test_missing_model_is_named(tmp_path, capsys):
    assert "nowhere" in _error(capsys, ["eval", str(tmp_path / "nowhere"), "--data",
                                        "arithmetic"])


PUBLISHED = Path(__file__).parents[1] / "data" / "published"


def test_eval_on_published_files_reports_each_benchmark(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "res"
    code = main(["eval", str(tiny_model_dir), "--data", str(PUBLISHED / "gsm8k.jsonl"),
                 "--data", str(PUBLISHED / "olympiadbench.json"), "--n", "2",
                 "--max-new-tokens", "3", "--out", str(out), "--no-progress"])
    assert code == 0
    header = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("| metric"))
    assert [c.strip() for c in header.split("|")[1:-1]] == [
        "metric (%)", "gsm8k", "olympiadbench", "average"]
    samples = _samples(out)
    assert [s["answer"] for s in samples] == ["14", "1200", "12", "2", ["3", "-3"]]
    assert all(len(s["votes"]) == 2 for s in samples)


def test_readme_eval_data_specs_resolve_as_written(tmp_path, monkeypatch):
    import pyarrow
    import pyarrow.parquet

    from maspo.eval_specs import resolve_datasets

    readme = (Path(__file__).parents[2] / "README.md").read_text().splitlines()
    [line] = [line for line in readme if line.startswith("maspo eval final_model/ --data")]
    words = line.split()
    specs = [words[i + 1] for i, word in enumerate(words) if word == "--data"]
    assert specs == ["aime24.jsonl", "math500.parquet"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aime24.jsonl").write_text((PUBLISHED / "aime24.jsonl").read_text())
    rows = [json.loads(line) for line in (PUBLISHED / "math500.jsonl").read_text().splitlines()]
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "math500.parquet")
    aime, math500 = resolve_datasets(["aime24.jsonl", "math500.parquet"])
    assert (aime.name, [e.answer for e in aime.examples]) == ("aime24", ["24", "073", "104."])
    assert (math500.name, [e.answer for e in math500.examples]) == (
        "math500", ["4", "62.5\\%", "\\textbf{(C) }18"])


def test_eval_of_a_run_samples_at_the_runs_eval_temperature(tiny_run, tmp_path):
    # the run's train.eval_temperature (0.7 by default), not a hidden 1.0; --temperature wins
    args = ["--n", "1", "--no-progress"]
    assert main(["eval", str(tiny_run), "--out", str(tmp_path / "a"), *args]) == 0
    settings = json.loads((tmp_path / "a" / "eval.json").read_text())["settings"]
    assert settings["temperature"] == 0.7
    assert main(["eval", str(tiny_run), "--out", str(tmp_path / "b"), "--temperature", "1.3",
                 *args]) == 0
    assert json.loads((tmp_path / "b" / "eval.json").read_text())["settings"]["temperature"] == 1.3


def test_a_run_is_evaluated_at_its_own_precision_unless_told(tiny_model_dir, tmp_path,
                                                             capsys):
    """``maspo eval`` of a run samples at the run's ``train.precision``; ``--precision``
    overrides it, and a plain model directory evaluates in fp32."""
    from maspo.config import load_config
    from maspo.testing import tiny_overrides
    from maspo.trainer import train

    run = tmp_path / "bf16-run"
    train(load_config(None, tiny_overrides(tiny_model_dir, run, **{
        "train.precision": "bf16", "train.steps": 1})), progress=False)
    capsys.readouterr()
    cases = [(run, [], "bf16"), (run, ["--precision", "fp32"], "fp32"),
             (tiny_model_dir, ["--data", "arithmetic"], "fp32")]
    for index, (spec, extra, expected) in enumerate(cases):
        out = tmp_path / f"eval-{index}"
        assert main(["eval", str(spec), "--n", "2", "--test-size", "2", "--out", str(out),
                     "--no-progress", *extra]) == 0
        assert json.loads((out / "eval.json").read_text())["precision"] == expected
        assert f", {expected})" in capsys.readouterr().out
