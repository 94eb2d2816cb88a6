"""`maspo compare` end to end on a tiny model: table rows, valid PNGs, identical prompts
per seed, restart skips finished work, a killed run resumes."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from maspo.cli import main
from maspo.compare import run_comparison, run_config
from maspo.config import load_config
from maspo.evaluate import eval_settings
from maspo.objective_specs import parse_variants
from maspo.paired import detectable_difference
from maspo.trainer import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ABLATION = "maspo:mass_adaptive=false,risk_control=false"


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and matplotlib.image.imread(path).size > 0


def _records(run_dir) -> list[dict]:
    run_dir = Path(run_dir)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def comparison(tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "compare"
    argv = ["compare", "--objectives", f"grpo,{ABLATION}", "--seeds", "0,1", "--out",
            str(out), "--n", "2", "--target", "0.0", "--no-progress",
            *tiny_base]
    assert main(argv) == 0
    return out, argv


def test_two_objectives_by_two_seeds_give_the_table_and_figures(comparison):
    out, _ = comparison
    table = (out / "results.md").read_text().split("\n\n")[0].splitlines()  # the first
    rows = [line for line in table if line.startswith("| ") and "objective" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["grpo", ABLATION]
    header = table[0]
    for column in ("seeds", "avg@2", "pass@1", "pass@2", "steps to 0", "train time (s)"):
        assert column in header
    assert all(r.split("|")[2].strip() == "2" for r in rows)  # two seeds each

    with (out / "results.csv").open() as f:
        lines = list(csv.DictReader(f))
    assert [r["objective"] for r in lines] == ["grpo", ABLATION]
    assert {"avg@2_mean", "avg@2_std", "pass@2_mean", "maj@2_mean", "train_time_s_mean",
            "steps_to_target_mean", "reached_target"} <= set(lines[0])
    assert all(r["reached_target"] == "2" for r in lines)  # target 0 is reached at step 0

    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted((r["objective"], r["seed"]) for r in runs) == sorted(
        (o, s) for o in ("grpo", ABLATION) for s in (0, 1))
    for run in runs:  # step 0: the run's own evaluation before training
        assert run["step0"] == _records(run["run_dir"])[0]["eval/accuracy"]
        assert run["gain"] == pytest.approx(run["avg@2"] - run["step0"])
    assert "step 0" in header and "min gain" in header
    for run in runs:  # the trust region's use: mean and lowest step of ratio/outside_trust
        shares = [r["ratio/outside_trust"] for r in _records(run["run_dir"])
                  if "ratio/outside_trust" in r]
        # (logged at steps whose second mini-batch held a group with unequal rewards)
        assert shares and all(0 <= v <= 1 for v in shares)
        assert run["outside_trust_mean"] == pytest.approx(sum(shares) / len(shares))
        assert run["outside_trust_min"] == min(shares)
    grpo = [r for r in runs if r["objective"] == "grpo"]
    mean_used = sum(r["outside_trust_mean"] for r in grpo) / 2
    lowest = min(r["outside_trust_min"] for r in grpo)
    assert "outside [0.8, 1.25]: mean (lowest step)" in header
    assert f"{mean_used:.3f} ({lowest:.3f})" in [c.strip() for c in rows[0].split("|")]
    for name in ("learning_curves.png", "objective_activity.png", "ratios.png"):
        assert _is_png(out / "figures" / name)

    record = yaml.safe_load((out / "compare.yaml").read_text())
    assert record["objectives"] == ["grpo", ABLATION] and record["seeds"] == [0, 1]
    assert record["base_config"]["train"]["steps"] == 2


def test_each_objective_is_paired_with_grpo_by_seed(comparison):
    out, _ = comparison
    results = json.loads((out / "results.json").read_text())
    runs = {(r["objective"], r["seed"]): r for r in results["runs"]}
    [row] = results["paired"]
    assert (row["objective"], row["baseline"], sorted(row["seeds"])) == (ABLATION, "grpo",
                                                                         [0, 1])
    diffs = [runs[(ABLATION, s)]["avg@2"] - runs[("grpo", s)]["avg@2"] for s in (0, 1)]
    assert row["final"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert row["final"]["low"] <= row["final"]["mean"] <= row["final"]["high"]
    for run in runs.values():  # the area under each run's logged held-out curve
        steps_acc = [(r["step"], r["eval/accuracy"]) for r in _records(run["run_dir"])
                     if "eval/accuracy" in r]
        assert [s for s, _ in steps_acc] == [0, 1, 2]
        expected = ((steps_acc[0][1] + steps_acc[1][1]) / 2
                    + (steps_acc[1][1] + steps_acc[2][1]) / 2) / 2
        assert run["auc"] == pytest.approx(expected)
    table = (out / "results.md").read_text()
    assert "Δ avg@2 [95% CI]" in table and "Δ curve area [95% CI]" in table
    final, auc = [t for t in table.splitlines() if t.startswith(f"| {ABLATION} ") and "[" in t]
    assert row["final_shown"] in final and row["final"]["verdict"] in final
    assert row["auc_shown"] in auc and row["auc"]["verdict"] in auc
    with (out / "paired.csv").open() as f:
        [paired] = list(csv.DictReader(f))
    assert paired["objective"] == ABLATION and paired["final_verdict"] == row["final"]["verdict"]
    # the smallest difference two seeds with this spread would show (maspo.paired)
    assert float(paired["final_detectable"]) == pytest.approx(row["final"]["detectable"])
    assert row["final"]["detectable"] == pytest.approx(detectable_difference(
        statistics.stdev(diffs), 2)) and row["auc"]["detectable"] >= 0
    assert f"±{row['final']['detectable']:.3f}" in final


def test_a_baseline_not_compared_is_refused_before_training(tiny_base, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--objectives", "grpo", "--baseline", "dgpo", "--out", str(out),
            *tiny_base]
    assert main(argv) == 2
    assert "--baseline 'dgpo' is not one of --objectives" in capsys.readouterr().err
    assert not out.exists()


def test_each_seed_index_gives_every_objective_the_same_prompts_and_samples(comparison):
    out, _ = comparison
    runs = out / "runs"
    ablation = runs / "maspo--mass_adaptive-false--risk_control-false"
    for seed in (0, 1):
        grpo = _records(runs / "grpo" / f"seed-{seed}")
        other = _records(ablation / f"seed-{seed}")
        # same initial model, prompts and sampling seed: the first rollout is identical
        for key in ("reward", "response_length", "entropy"):
            assert grpo[1][key] == other[1][key]
        assert grpo[0]["eval/accuracy"] == other[0]["eval/accuracy"]
        config = yaml.safe_load((ablation / f"seed-{seed}" / "config.yaml").read_text())
        assert config["loss"] == {**config["loss"], "name": "maspo", "params": {
            "mass_adaptive": False, "risk_control": False}}
        assert config["train"]["seed"] == seed
    seed0, seed1 = _records(runs / "grpo" / "seed-0"), _records(runs / "grpo" / "seed-1")
    assert seed0[1]["reward"] != seed1[1]["reward"]  # another seed: other prompts


def test_rerunning_a_finished_comparison_trains_nothing(comparison, capsys):
    out, argv = comparison
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/metrics.jsonl")}
    evals = {p: p.read_text() for p in out.glob("runs/*/*/final_eval.json")}
    assert len(before) == 4 and len(evals) == 4
    assert main(argv) == 0
    assert capsys.readouterr().out.count(": done (") == 4
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert {p: p.read_text() for p in evals} == evals


def test_plot_command_draws_the_runs_of_a_comparison(comparison, tmp_path, capsys):
    out, _ = comparison
    runs = sorted(str(p) for p in out.glob("runs/*/seed-*"))
    assert main(["plot", *runs, "--out", str(tmp_path / "dyn.png")]) == 0
    assert _is_png(tmp_path / "dyn.png") and _is_png(tmp_path / "dyn-objective.png")


def test_a_run_killed_after_its_first_checkpoint_resumes_to_the_end(tiny_base, tmp_path):
    base = load_config(None, tiny_base)
    [variant] = parse_variants(["grpo"])
    out = tmp_path / "compare"
    run_dir = out / "runs" / "grpo" / "seed-0"
    # what a run killed after its step-1 checkpoint leaves: no summary, no final model
    train(run_config(base, variant, 0, run_dir), progress=False)
    shutil.rmtree(run_dir / "checkpoints" / "step-000002")
    (run_dir / "checkpoints" / "latest").write_text("step-000001\n")
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _records(run_dir)[:2]))
    (run_dir / "summary.json").unlink()
    shutil.rmtree(run_dir / "final_model")

    lines = []
    [result] = run_comparison(base, [variant], [0], out, eval_settings(n=2, max_new_tokens=6),
                              progress=False, log=lines.append)
    assert "resuming" in lines[0]
    assert [r["step"] for r in _records(run_dir)] == [0, 1, 2]
    assert (run_dir / "summary.json").is_file() and (run_dir / "final_eval.json").is_file()
    assert len(result.correct) == 6 and all(len(c) == 2 for c in result.correct)
    final = json.loads((run_dir / "final_eval.json").read_text())
    assert final["settings"]["max_new_tokens"] == 6  # the comparison's own evaluation
    assert [len(texts) for texts in final["completions"]] == [2] * 6
    # evaluated: what the comparison reads is kept, the weights are not
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "final_model").exists()
