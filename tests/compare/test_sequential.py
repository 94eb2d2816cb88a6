"""`maspo compare --until ... --max-seeds N`: seeds are added one at a time until the
paired half-widths are reached or the cap, finished runs are reused (also from a copy of
the folder elsewhere), and the results record the commit and the pairing statistics."""

from __future__ import annotations

import json
import shutil

import pytest

from maspo.cli import main
from maspo.compare import StopRule, parse_until, widths_left


def _argv(out, tiny_base, *extra):
    return ["compare", "--objectives", "grpo,maspo", "--seeds", "0,1", "--out", str(out),
            "--n", "2", "--no-progress", *extra, *tiny_base]


@pytest.fixture(scope="module")
def sequential(tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "compare"
    # widths no tiny run reaches: the cap ends it
    assert main(_argv(out, tiny_base, "--until", "auc=1e-9,final=1e-9",
                      "--max-seeds", "3")) == 0
    return out


def test_seeds_are_added_up_to_the_cap(sequential, capsys):
    results = json.loads((sequential / "results.json").read_text())
    assert sorted({run["seed"] for run in results["runs"]}) == [0, 1, 2]
    assert results["stop"] == {"until": {"auc": 1e-9, "final": 1e-9}, "max_seeds": 3}
    [row] = results["paired"]
    assert row["seeds"] == [0, 1, 2] and row["final"]["n"] == 3
    for metric in ("final", "auc"):  # every pairing figure is there and consistent
        d = row[metric]
        assert d["half_width"] == pytest.approx((d["high"] - d["low"]) / 2)
        assert d["sd_paired"] >= 0 and d["sd_unpaired"] >= 0
        assert d["welch_low"] <= d["mean"] <= d["welch_high"]
    commit = results["maspo_commit"]
    assert commit is None or len(commit.removesuffix("+dirty")) == 40


def test_the_paired_tables_show_correlation_sds_and_welch(sequential):
    text = (sequential / "results.md").read_text()
    assert text.count("| r ") == 2 and text.count("Welch [95% CI]") == 2
    header = (sequential / "paired.csv").read_text().splitlines()[0].split(",")
    for metric in ("final", "auc"):
        for field in ("r", "sd_paired", "sd_unpaired", "welch_low", "welch_high"):
            assert f"{metric}_{field}" in header


def test_a_copy_of_the_folder_elsewhere_goes_on_without_training_again(sequential,
                                                                      tiny_base, tmp_path,
                                                                      capsys):
    moved = tmp_path / "elsewhere"
    shutil.copytree(sequential, moved)
    for run in moved.glob("runs/*/seed-*"):  # what a commit keeps of a run
        shutil.rmtree(run / "tensorboard", ignore_errors=True)
    metrics = {p: p.read_text() for p in moved.glob("runs/*/seed-*/metrics.jsonl")}
    capsys.readouterr()
    assert main(_argv(moved, tiny_base, "--until", "auc=1e-9", "--max-seeds", "3")) == 0
    said = capsys.readouterr().out
    assert "training" not in said and "resuming" not in said
    assert {p: p.read_text() for p in metrics} == metrics
    assert "--max-seeds 3 reached" in said


def test_widths_left_names_what_is_still_too_wide():
    rule = StopRule({"auc": 0.03, "final": 0.05}, 10)
    paired = [{"objective": "maspo", "auc": {"half_width": 0.02},
               "final": {"half_width": 0.07}}]
    assert widths_left(paired, rule) == ["maspo final ±0.070 (> 0.05)"]
    paired[0]["final"]["half_width"] = 0.05
    assert widths_left(paired, rule) == []


@pytest.mark.parametrize(("until", "max_seeds", "message"), [
    ("auc=0.03", None, "--until needs --max-seeds"),
    ("pass=0.03", 5, "name one of final, auc"),
    ("auc=wide", 5, "needs a half-width"),
    ("auc=0", 5, "must be > 0"),
    ("auc=0.03", 1, "fewer than the 2 --seeds"),
])
def test_bad_stopping_rules_are_named(until, max_seeds, message):
    from maspo.errors import UserError

    with pytest.raises(UserError, match=message):
        parse_until(until, max_seeds, [0, 1])


def test_max_seeds_alone_and_until_without_a_baseline_exit_2(tiny_base, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(_argv(out, tiny_base, "--max-seeds", "4")) == 2
    assert "--max-seeds needs --until" in capsys.readouterr().err
    argv = ["compare", "--objectives", "maspo", "--seeds", "0,1", "--out", str(out),
            "--until", "auc=0.03", "--max-seeds", "4", *tiny_base]
    assert main(argv) == 2
    assert "--until needs a paired comparison" in capsys.readouterr().err
    assert not out.exists()  # nothing written
