"""Benchmark files as published (our own rows in each published shape): what loads, the
reference that results, the verdicts it gives, and the ambiguous files that are refused."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from maspo.config import load_config
from maspo.data import load_examples
from maspo.errors import UserError
from maspo.rewards import Verifier

PUBLISHED = Path(__file__).parent / "published"

# file -> [(prompt start, reference)] as loaded with no options at all.
EXPECTED = {
    "gsm8k.jsonl": [("A baker", "14"), ("A farm", "1200"), ("Tom reads", "12")],
    "math.jsonl": [("What is $\\frac{3}{4}", "\\frac{7}{8}"), ("Solve", "4")],
    "math500.jsonl": [("Find the remainder", "4"), ("What percent", "62.5\\%"),
                      ("Which choice", "\\textbf{(C) }18")],
    "aime24.jsonl": [("Find the number", "24"), ("Find the last", "073"), ("Compute", "104.")],
    "amc23.jsonl": [("What is $3^3$", "27"), ("What is half", "2.5")],
    "minerva.jsonl": [("A car", "75"), ("Light", "6 \\times 10^{5}")],
    "olympiadbench.json": [("Find all real", "2"), ("Give an integer", ("3", "-3"))],
}

# file -> per row, (a right completion, a wrong completion), both in the strict form.
VERDICTS = {
    "gsm8k.jsonl": [("\\boxed{14}", "\\boxed{18}"), ("\\boxed{\\$1,200}", "\\boxed{400}"),
                    ("\\boxed{12}", "\\boxed{2011}")],
    "math.jsonl": [("\\boxed{0.875}", "\\boxed{\\frac{3}{4}}"), ("\\boxed{x=4}", "\\boxed{8}")],
    "math500.jsonl": [("\\boxed{4}", "\\boxed{49}"), ("\\boxed{62.5}", "\\boxed{0.625}"),
                      ("\\boxed{18}", "\\boxed{12}")],
    "aime24.jsonl": [("\\boxed{24}", "\\boxed{23}"), ("\\boxed{73}", "\\boxed{1073}"),
                     ("\\boxed{104}", "\\boxed{52}")],
    "amc23.jsonl": [("\\boxed{27}", "\\boxed{9}"), ("\\boxed{\\frac{5}{2}}", "\\boxed{2}")],
    "minerva.jsonl": [("\\boxed{75}", "\\boxed{150}"), ("\\boxed{600000}", "\\boxed{6}")],
    "olympiadbench.json": [("\\boxed{2}", "\\boxed{-2}"), ("\\boxed{-3}", "\\boxed{9}")],
}


@pytest.fixture(scope="module")
def verifier():
    with Verifier() as verifier:
        yield verifier


def _to_parquet(source: Path, target: Path) -> Path:
    rows = (json.loads(source.read_text()) if source.suffix == ".json" else
            [json.loads(line) for line in source.read_text().splitlines()])
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), target)
    return target


@pytest.mark.parametrize("name", EXPECTED)
def test_published_file_loads_with_its_reference(name: str) -> None:
    examples = load_examples(PUBLISHED / name)
    assert [(e.prompt[:len(p)], e.answer) for e, (p, _) in zip(examples, EXPECTED[name])] == \
        EXPECTED[name]
    assert all(e.reward == "math_strict" for e in examples)  # files: strict by default


# aime24.jsonl mixes int and string answers, which one Parquet column cannot hold.
@pytest.mark.parametrize("name", [name for name in EXPECTED if name != "aime24.jsonl"])
def test_parquet_copy_loads_the_same(name: str, tmp_path: Path) -> None:
    parquet = _to_parquet(PUBLISHED / name, tmp_path / f"{Path(name).stem}.parquet")
    assert [e.answer for e in load_examples(parquet)] == [a for _, a in EXPECTED[name]]


@pytest.mark.parametrize("name", VERDICTS)
def test_right_and_wrong_answers_get_their_verdicts(name: str, verifier: Verifier) -> None:
    examples = load_examples(PUBLISHED / name)
    right = [r for r, _ in VERDICTS[name]]
    wrong = [w for _, w in VERDICTS[name]]
    golds = [e.answer for e in examples]
    assert verifier.score_strict(right, golds) == [1.0] * len(golds)
    assert verifier.score_strict(wrong, golds) == [0.0] * len(golds)


def test_gold_answers_as_published_verify_against_themselves(verifier: Verifier) -> None:
    rows = [json.loads(line) for line in (PUBLISHED / "math500.jsonl").read_text().splitlines()]
    rows += [json.loads(line) for line in (PUBLISHED / "math.jsonl").read_text().splitlines()]
    for row in rows:  # the solution itself, box and all, is a right completion
        [example] = [e for e in load_examples(PUBLISHED / "math.jsonl") + load_examples(
            PUBLISHED / "math500.jsonl") if e.prompt == row["problem"]]
        assert verifier.score_strict([row["solution"]], [example.answer]) == [1.0]


def test_gsm8k_solution_text_no_longer_scores_by_a_stray_number(verifier: Verifier) -> None:
    # Row 3's worked solution holds 2010 and 2011 in its question; the reference is 12 only.
    [*_, example] = load_examples(PUBLISHED / "gsm8k.jsonl")
    assert example.answer == "12"
    assert verifier.score(["The answer is 12.\nTom, 2011"], [example.answer]) == [1.0]
    assert verifier.score(["I think it is 2011"], [example.answer]) == [0.0]


README = Path(__file__).parents[2] / "README.md"


def test_readme_gsm8k_line_as_written(tmp_path: Path, monkeypatch) -> None:
    from maspo.data.splits import data_splits

    [line] = [line for line in README.read_text().splitlines()
              if line.startswith("maspo train data.path=gsm8k.jsonl")]
    overrides = shlex.split(line)[2:]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gsm8k.jsonl").write_text((PUBLISHED / "gsm8k.jsonl").read_text())
    config = load_config(None, [*overrides, "data.test_size=1"])
    assert config.data.answer_check == "lenient"
    splits = data_splits(config.data, config.train.seed)
    test = splits.heldout
    assert {e.reward for e in test} == {"math"}
    assert [(e.prompt[:7], e.answer) for e in test] == [("A baker", "14")]
    assert sorted(e.answer for e in _take(splits.train_stream(), 2)) == ["12", "1200"]


def _take(iterator, count: int) -> list:
    return [next(iterator) for _ in range(count)]


@pytest.mark.parametrize(("options", "reward"), [
    ({}, "math_strict"), ({"answer_check": "lenient"}, "math"),
    ({"answer_check": "strict"}, "math_strict"),
])
def test_answer_check_picks_the_reward(options: dict, reward: str) -> None:
    assert {e.reward for e in load_examples(PUBLISHED / "amc23.jsonl", **options)} == {reward}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(("rows", "options", "reference"), [
    ([{"question": "q", "answer": "work\n#### 7"}], {"answer_format": "plain"}, "work\n#### 7"),
    ([{"problem": "p", "solution": "so \\boxed{5}", "answer": "5"}],
     {"fields": {"answer": "solution"}}, "5"),
    ([{"problem": "p", "answer": "\\boxed{3} then"}], {"answer_format": "boxed"}, "3"),
    ([{"problem": "p", "answer": "x\n#### -4"}], {"answer_format": "gsm8k"}, "-4"),
    ([{"problem": "p", "answer": ["$1$", "$1$"]}], {}, "1"),  # repeats collapse
    ([{"problem": "p", "answer": 1e-7}], {}, "1e-07"),
    ([{"problem": "p", "answer": -3}], {}, "-3"),
])
def test_answer_options_and_shapes(tmp_path, rows, options, reference) -> None:
    [example] = load_examples(write_jsonl(tmp_path / "d.jsonl", rows), **options)
    assert example.answer == reference


@pytest.mark.parametrize(("rows", "options", "message"), [
    ([{"problem": "p", "question": "q", "answer": "1"}], {},
     "Row 1 .* has both 'problem' and 'question', and they differ; name the prompt with "
     "data.fields.prompt"),
    ([{"problem": "p", "answer": "1", "final_answer": ["2"]}], {},
     "Row 1 .* has both 'answer' and 'final_answer', and they differ; .*data.fields.answer"),
    ([{"problem": "p", "answer": "1", "final_answer": ["1", "-1"]}], {},
     "both 'answer' and 'final_answer', and they differ"),
    ([{"question": "q", "answer": "w\n#### 4", "rationale": "4"}],
     {"fields": {"answer": "rationale"}}, "GSM8K '#### ' answer in 'answer' but "
     "data.fields.answer maps 'rationale'.*data.answer_format=plain"),
    ([{"problem": "p", "solution": "It is 4 since\n2 + 2 = 4."}], {},
     "'solution' reads like a worked solution .*data.fields.answer.*data.answer_format=plain"),
    ([{"problem": "p", "answer": "w\n#### 4", "solution": "\\boxed{4}"}], {},
     "worked solution in both 'answer' and 'solution'.*data.fields.answer"),
    ([{"question": "q", "answer": "w\n#### 4"}, {"question": "q", "answer": "4"}], {},
     "Row 2 .* has no GSM8K '#### ' answer line, unlike row 1; .*data.answer_format"),
    ([{"question": "q", "answer": "w \\boxed{4}\n#### 4"}], {},
     "both a '#### ' line and a \\\\boxed\\{\\} answer.*data.answer_format=gsm8k or boxed"),
    ([{"problem": "p", "answer": "4"}], {"answer_format": "gsm8k"}, "no final line '#### "),
    ([{"problem": "p", "answer": "4"}], {"answer_format": "boxed"}, "no \\\\boxed"),
    ([{"problem": "p", "answer": 4}], {"answer_format": "boxed"}, "is a number"),
    ([{"problem": "p", "answer": []}], {}, "'answer' is an empty list"),
    ([{"problem": "p", "answer": [["1"]]}], {}, "'answer' is list, not a string"),
    ([{"problem": "p", "answer": True}], {}, "'answer' is bool"),
    ([{"problem": "p", "answer": float("nan")}], {}, "is nan, not an answer"),
    ([{"problem": "p", "answer": "\\boxed{ }"}], {}, "empty final answer"),
    ([{"problem": "p", "solution": "a"}], {"answer_format": "gsmk"}, "'gsmk' is not one of"),
    ([{"problem": "p", "solution": "a"}], {"answer_check": "loose"}, "'loose' is not one of"),
])
def test_ambiguous_or_bad_files_are_refused_with_the_option(tmp_path, rows, options, message):
    with pytest.raises(UserError, match=message):
        load_examples(write_jsonl(tmp_path / "d.jsonl", rows), **options)


def test_duplicate_prompt_fields_that_agree_load_and_only_a_differing_row_is_refused(
        tmp_path) -> None:
    # AMC23 as the Qwen2.5-Math evaluation suite publishes it: problem and question hold
    # the same text in every row (tests/data/published/amc23.jsonl is that shape).
    rows = [json.loads(line) for line in (PUBLISHED / "amc23.jsonl").read_text().splitlines()]
    assert all(row["problem"] == row["question"] for row in rows)
    examples = load_examples(PUBLISHED / "amc23.jsonl")
    assert [e.prompt for e in examples] == [row["problem"] for row in rows]
    assert examples[0].columns["question"] == rows[0]["question"]  # still a reward column

    rows += [{"id": 2, "problem": "What is 2 + 2?", "question": "What is 2 + 3?",
              "answer": 4.0}, {"id": 3, "problem": "x", "question": "y", "answer": 1.0}]
    with pytest.raises(UserError) as refused:
        load_examples(write_jsonl(tmp_path / "amc.jsonl", rows))
    assert str(refused.value) == (
        f"Row 3 of {tmp_path / 'amc.jsonl'} has both 'problem' and 'question', and they "
        "differ; name the prompt with data.fields.prompt (--prompt-field).")
    mapped = load_examples(tmp_path / "amc.jsonl", {"prompt": "question"})
    assert mapped[2].prompt == "What is 2 + 3?"


@pytest.mark.parametrize(("answer", "final_answer", "reference"), [
    ("27", ["27"], "27"),  # a one-element list reads as its element
    (27.0, "27", "27"),  # AMC's float and the same integer as text
    ("$\\frac{1}{2}$", ["\\frac{1}{2}"], "\\frac{1}{2}"),  # delimiters stripped alike
])
def test_answer_and_final_answer_that_read_the_same_are_one_reference(
        tmp_path, answer, final_answer, reference) -> None:
    rows = [{"problem": "p", "answer": answer, "final_answer": final_answer}]
    [example] = load_examples(write_jsonl(tmp_path / "d.jsonl", rows))
    assert example.answer == reference


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.answer_check=strict"], "apply to data.path files"),
    (["data.answer_format=boxed"], "apply to data.path files"),
    (["data.answer_check=exact"], "'exact' is not one of strict, lenient"),
])
def test_answer_config_keys_are_checked_at_start(overrides, message) -> None:
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


def test_train_runs_on_a_published_file_with_list_answers(tiny_model_dir, tmp_path) -> None:
    from maspo.testing import tiny_overrides
    from maspo.trainer import train

    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, out, **{
        "data.path": PUBLISHED / "olympiadbench.json", "data.test_size": 1,
        "train.steps": 1, "reward.functions": "[]"})
    summary = train(load_config(None, overrides), progress=False)
    assert summary.steps == 1 and summary.eval_prompts == 1
    assert (out / "final_model" / "config.json").is_file()
