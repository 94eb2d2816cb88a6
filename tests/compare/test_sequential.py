"""`maspo compare --until ... --max-seeds N`: seeds are added one at a time until the
paired half-widths are reached or the cap, finished runs are reused (also from a copy of
the folder elsewhere), and the results record the commit and the pairing statistics."""

from __future__ import annotations

import json
import math
import shutil
import statistics

import pytest
import yaml

from maspo.cli import main
from maspo.compare import StopRule, parse_until, widths_left


def _argv(out, tiny_base, *extra, seeds="0"):
    return ["compare", "--objectives", "grpo,maspo", "--seeds", seeds, "--out", str(out),
            "--n", "2", "--no-progress", *extra, *tiny_base]


UNTIL = ("--until", "auc=0.03,final=0.05")


@pytest.fixture(scope="module")
def sequential(tiny_base, tmp_path_factory):
    """One seed (no interval yet), so a second is added; the tiny model scores 0
    everywhere, so two seeds give zero-width intervals and the rule is met there."""
    out = tmp_path_factory.mktemp("seq") / "compare"
    assert main(_argv(out, tiny_base, *UNTIL, "--max-seeds", "3", "--equivalence", "0.03")) == 0
    return out


def test_a_seed_is_added_until_the_rule_is_met(sequential):
    results = json.loads((sequential / "results.json").read_text())
    assert sorted({run["seed"] for run in results["runs"]}) == [0, 1]
    assert results["stop"] == {"until": {"auc": 0.03, "final": 0.05}, "max_seeds": 3}
    [row] = results["paired"]
    assert row["seeds"] == [0, 1] and row["final"]["n"] == 2
    runs = {(r["objective"], r["seed"]): r for r in results["runs"]}
    for metric, key in (("final", "avg@2"), ("auc", "auc")):
        d = row[metric]
        assert d["half_width"] == pytest.approx((d["high"] - d["low"]) / 2)
        assert d["half_width"] <= 0.05
        arms = [[runs[(o, s)][key] for s in (0, 1)] for o in ("maspo", "grpo")]
        diffs = [a - b for a, b in zip(*arms)]
        assert d["sd_paired"] == pytest.approx(statistics.stdev(diffs))
        assert d["sd_unpaired"] == pytest.approx(math.sqrt(
            statistics.variance(arms[0]) + statistics.variance(arms[1])))
    commit = results["maspo_commit"]
    assert commit is None or len(commit.removesuffix("+dirty")) == 40
    # each run records the code that trained it; here the same checkout wrote the results
    assert {run["maspo_commit"] for run in results["runs"]} == {commit}
    assert results["run_commits"] == {commit or "unrecorded": 4}
    assert yaml.safe_load((sequential / "compare.yaml").read_text())["seeds"] == [0, 1]


def test_an_interval_inside_the_named_margin_reads_equivalent(sequential):
    results = json.loads((sequential / "results.json").read_text())
    assert results["equivalence_margin"] == 0.03
    [row] = results["paired"]  # every score 0: the intervals are [0, 0]
    assert row["final"]["verdict"] == row["auc"]["verdict"] == "equivalent"
    text = (sequential / "results.md").read_text()
    assert text.count("equivalent (±0.03)") == 2 and "lies inside ±0.03" in text


@pytest.mark.parametrize("margin", ["0", "1.5", "-0.03"])
def test_a_margin_outside_0_to_1_exits_2_naming_the_flag(tiny_base, tmp_path, capsys, margin):
    out = tmp_path / "c"
    assert main(_argv(out, tiny_base, "--equivalence", margin)) == 2
    assert "--equivalence" in capsys.readouterr().err and not out.exists()


def test_the_paired_tables_show_the_pairs_the_stopping_rule_needs(sequential):
    [row] = json.loads((sequential / "results.json").read_text())["paired"]
    assert row["auc"]["pairs_needed"] == row["final"]["pairs_needed"] == 2  # no spread
    text = (sequential / "results.md").read_text()
    assert "| pairs for ±0.05 |" in text and "| pairs for ±0.03 |" in text


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
    assert main(_argv(moved, tiny_base, *UNTIL, "--max-seeds", "3", seeds="0,1")) == 0
    said = capsys.readouterr().out
    assert ": training (" not in said and ": resuming (" not in said
    assert "stopping rule met at 2 seeds" in said
    assert {p: p.read_text() for p in metrics} == metrics


def test_at_the_cap_it_stops_and_names_what_is_still_too_wide(sequential, tiny_base,
                                                              tmp_path, capsys):
    moved = tmp_path / "capped"
    shutil.copytree(sequential, moved)
    capsys.readouterr()
    assert main(_argv(moved, tiny_base, *UNTIL, "--max-seeds", "1")) == 0
    said = capsys.readouterr().out
    assert ": training (" not in said
    assert "--max-seeds 1 reached; still too wide: maspo auc ±nan (> 0.03)" in said


def test_widths_left_names_what_is_still_too_wide():
    rule = StopRule({"auc": 0.03, "final": 0.05}, 10)
    paired = [{"objective": "maspo", "auc": {"half_width": 0.02, "sd_paired": 0.05},
               "final": {"half_width": 0.07, "sd_paired": 0.1}}]
    # 18 pairs: t(0.975, 17) x 0.1 / sqrt(18) = 0.0497; 17 pairs give 0.0514
    assert widths_left(paired, rule) == [
        "maspo final ±0.070 (> 0.05; about 18 pairs at this spread)"]
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
