"""The run folder: a real tiny run's files are where RunDir says, and its status follows
what the run has written."""

from __future__ import annotations

import pytest

from maspo.config import load_config
from maspo.errors import UserError
from maspo.run import RunDir, check_run_dir, read_jsonl
from maspo.testing import tiny_overrides
from maspo.trainer import train


def test_a_finished_run_holds_every_file_rundir_names(tiny_model_dir, tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.status() == "new"
    config = load_config(None, tiny_overrides(tiny_model_dir, run.root))
    train(config, progress=False)
    for path in (run.config, run.metrics, run.samples, run.summary, run.curves):
        assert path.is_file(), path
    assert run.tensorboard.is_dir() and run.has_final_model()
    assert run.latest_checkpoint() == run.checkpoints / "step-000002"
    assert run.status() == "done"
    assert run.read_config() == config
    assert [r["step"] for r in run.read_metrics()] == [0, 1, 2]
    assert {s["step"] for s in run.read_samples()} == {1, 2}
    assert run.read_summary().steps == 2

    run.summary.unlink()
    assert run.status() == "resumable"
    run.write_stopped("stopped at step 2: 3 consecutive updates had a non-finite loss")
    assert run.status() == "stopped"
    assert run.stopped_reason().startswith("stopped at step 2")
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        check_run_dir(config, run.root, resume=False)


def test_a_damaged_metrics_line_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1, "rew\n')
    with pytest.raises(UserError, match="line 2 of .*metrics.jsonl' is not valid JSON"):
        read_jsonl(path)
