"""`maspo compare --jobs 2` writes what a serial comparison writes, a failing run is
reported while the others finish, and evaluated runs keep no weights unless asked."""

from __future__ import annotations

import json
import re

import yaml

from maspo.cli import main
from maspo.config import load_config, to_dict

OBJECTIVES = "grpo,maspo"


def _results(out) -> dict:
    """results.json without what differs between two folders or two runs of the clock."""
    results = json.loads((out / "results.json").read_text())
    for run in results["runs"]:
        run.pop("train_time_s")
        run.pop("train_cpu_s")
        run["run_dir"] = run["run_dir"].removeprefix(str(out))
    results["step0_shared"].pop("mean_eval_cpu_s")
    return results


def _compare(out, tiny_base, *extra) -> int:
    return main(["compare", "--objectives", OBJECTIVES, "--seeds", "0", "--out", str(out),
                 "--n", "2", "--no-progress", *extra, *tiny_base])


def test_two_jobs_write_the_results_of_a_serial_comparison(tiny_base, tmp_path, capfd):
    assert _compare(tmp_path / "serial", tiny_base) == 0
    capfd.readouterr()
    assert _compare(tmp_path / "parallel", tiny_base, "--jobs", "2") == 0
    # each run says it is training from its own process when it starts, once, and the
    # comparison says when it finished (not "training" for every queued run up front)
    printed = capfd.readouterr().out
    assert "2 runs, 2 at a time" in printed
    for i, name in enumerate(OBJECTIVES.split(","), start=1):
        assert printed.count(f"[{i}/2] {name} seed 0: training (") == 1
        assert re.search(rf"\[{i}/2\] {name} seed 0: finished in \d+ s \([12] of 2 done\)",
                         printed)
    serial, parallel = _results(tmp_path / "serial"), _results(tmp_path / "parallel")
    assert [r["objective"] for r in parallel["runs"]] == ["grpo", "maspo"]
    assert all(r["stopped"] is None and r["failed"] is None for r in parallel["runs"])
    assert parallel == serial
    for out in (tmp_path / "serial", tmp_path / "parallel"):
        for run in out.glob("runs/*/seed-0"):  # evaluated: records kept, weights dropped
            assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl",
                                                       "samples.jsonl", "final_eval.json",
                                                       "summary.json"}
            assert not (run / "checkpoints").exists() and not (run / "final_model").exists()


def test_a_failing_run_is_reported_and_the_other_finishes(tiny_base, tmp_path, capsys):
    out = tmp_path / "cmp"
    # the grpo run's folder holds a run of another experiment: it cannot be resumed
    foreign = out / "runs" / "grpo" / "seed-0"
    foreign.mkdir(parents=True)
    other = load_config(None, [*tiny_base, "rollout.group_size=16", "loss.name=grpo",
                               f"train.output_dir={foreign}"])
    (foreign / "config.yaml").write_text(yaml.safe_dump(to_dict(other)))
    assert _compare(out, tiny_base, "--jobs", "2") == 0
    printed = capsys.readouterr().out
    assert "failed: cannot resume with rollout.group_size=4" in printed
    runs = {r["objective"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert runs["grpo"]["failed"].startswith("cannot resume with rollout.group_size=4: the "
                                             "run was started with 16")
    assert runs["grpo"]["avg@2"] is None
    assert runs["maspo"]["failed"] is None and runs["maspo"]["avg@2"] is not None
    assert re.search(r"\| grpo +\| 0 \(\+1 failed\) +\|", (out / "results.md").read_text())


def test_kept_checkpoints_and_models_stay(tiny_base, tmp_path):
    out = tmp_path / "cmp"
    assert _compare(out, tiny_base, "--keep-checkpoints", "--keep-models") == 0
    for run in out.glob("runs/*/seed-0"):
        assert (run / "checkpoints" / "latest").is_file()
        assert (run / "final_model" / "config.json").is_file()
