"""A run the trainer stops (non-finite updates) is a result of the comparison, not a crash."""

from __future__ import annotations

import csv

from maspo.cli import main


def test_a_stopped_run_is_counted_and_not_retried(tiny_base, tmp_path, capsys,
                                                  diverging_objective):
    diverging = diverging_objective
    out = tmp_path / "cmp"
    argv = ["compare", "--objectives", f"grpo,{diverging}", "--out", str(out), "--n", "2",
            "--no-progress", *tiny_base, "optim.max_bad_updates=1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "stopped: stopped at step 1" in printed
    rows = {r["objective"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert rows["grpo"]["seeds"] == "1" and rows["grpo"]["stopped"] == "0"
    assert rows[diverging]["seeds"] == "0" and rows[diverging]["stopped"] == "1"
    assert rows[diverging]["avg@2_mean"] == "nan"
    assert "0 (+1 stopped)" in (out / "results.md").read_text()

    assert main(argv) == 0  # the rerun keeps the verdict instead of training again
    assert f"{diverging} seed 0: stopped" in capsys.readouterr().out
