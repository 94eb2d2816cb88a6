"""train.report_to: a run logs what metrics.jsonl holds, and its resolved config, to each
tracker, offline (tests/conftest.py points trackio, wandb and MLflow at a folder of the
suite's own); the values are read back through each tracker's own store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wandb_offline import config as wandb_config
from wandb_offline import history as wandb_history

from maspo.cli import main
from maspo.config import flatten, load_config, resolved
from maspo.run import RunDir
from maspo.testing import tiny_overrides

ALL = "[tensorboard,trackio,wandb,mlflow]"


def _expected(run: RunDir) -> dict[int, dict[str, float]]:
    """step -> {metric: value} of metrics.jsonl: every finite number but the step."""
    return {r["step"]: {k: v for k, v in r.items() if k != "step" and
                        isinstance(v, (int, float)) and math.isfinite(v)}
            for r in run.read_metrics()}


def _by_step(points) -> dict[int, dict[str, float]]:
    """(step, key, value) in logging order -> step -> {key: the last value logged}."""
    out: dict[int, dict[str, float]] = {}
    for step, key, value in points:
        out.setdefault(step, {})[key] = value
    return out


def _mlflow(run_id: str) -> tuple[dict[int, dict[str, float]], dict[str, str], object]:
    from mlflow import MlflowClient

    client = MlflowClient()
    info = client.get_run(run_id)
    points = []
    for key in info.data.metrics:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
        points += [(m.step, key, m.value) for m in history]
    return _by_step(points), info.data.params, info


def _trackio(project: str, name: str) -> tuple[dict[int, dict[str, float]], dict]:
    from trackio import SQLiteStorage

    points = []
    for row in SQLiteStorage.get_logs(project, name):
        points += [(row["step"], k, v) for k, v in row.items()
                   if k not in ("step", "timestamp") and isinstance(v, (int, float))]
    return _by_step(points), SQLiteStorage.get_run_config(project, name)


def _wandb(run: RunDir, run_id: str) -> tuple[dict[int, dict[str, float]], dict]:
    points, config = [], {}
    for folder in sorted(run.root.glob(f"wandb/offline-run-*-{run_id}")):  # resumed: several
        for row in wandb_history(folder):
            points += [(row["step"], k, v) for k, v in row.items()
                       if not k.startswith("_") and k != "step"]
        config = wandb_config(folder)
    return _by_step(points), config


def _tensorboard(run: RunDir) -> dict[int, dict[str, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.tensorboard), size_guidance={"scalars": 0}).Reload()
    return _by_step((e.step, tag, e.value) for tag in events.Tags()["scalars"]
                    for e in events.Scalars(tag))


def _train(tiny_model_dir, out: Path, *extra: str) -> None:
    overrides = tiny_overrides(tiny_model_dir, out, **{"train.steps": 2, "train.eval_every": 1,
                                                       "train.report_to": ALL})
    assert main(["train", "--no-progress", *overrides, *extra]) == 0


def test_each_tracker_holds_the_jsonl_metrics_and_the_resolved_config(tiny_model_dir,
                                                                      tmp_path):
    run = RunDir(tmp_path / "report-all")
    _train(tiny_model_dir, run.root)
    expected = _expected(run)
    assert sorted(expected) == [0, 1, 2] and "eval/accuracy" in expected[0]
    assert {"reward", "entropy", "time/generate", "lr"} <= expected[2].keys()
    ids = run.read_tracker_ids()
    config = resolved(run.read_config())

    metrics, params, info = _mlflow(ids["mlflow"])
    assert metrics == expected  # bit for bit: MLflow keeps float64
    assert params == {k: str(v) for k, v in flatten(config).items()}
    assert info.info.run_name == "report-all" and info.info.status == "FINISHED"

    metrics, saved = _trackio("maspo", ids["trackio"])
    assert metrics == expected
    assert {k: v for k, v in saved.items() if not k.startswith("_")} == json.loads(
        json.dumps(config))

    metrics, saved = _wandb(run, ids["wandb"])
    assert metrics == expected
    assert {k: v for k, v in saved.items() if k != "_wandb"} == json.loads(json.dumps(config))

    metrics = _tensorboard(run)  # TensorBoard keeps float32
    assert metrics.keys() == expected.keys()
    for step, values in expected.items():
        assert metrics[step] == pytest.approx(values, rel=1e-6, abs=1e-30)


def test_a_resumed_run_continues_the_same_tracker_runs(tiny_model_dir, tmp_path):
    run = RunDir(tmp_path / "report-resumed")
    _train(tiny_model_dir, run.root)
    ids = run.read_tracker_ids()
    # wandb names an offline run's folder by its start second: a resume within the same
    # second as the first process (a tiny run takes less) would share that folder
    time.sleep(1.0)
    assert main(["train", "--no-progress", "--resume", f"train.output_dir={run.root}",
                 "train.steps=3"]) == 0
    assert run.read_tracker_ids() == ids
    expected = _expected(run)
    assert sorted(expected) == [0, 1, 2, 3]

    metrics, params, _ = _mlflow(ids["mlflow"])
    assert metrics == expected
    assert params["train.steps"] == "2"  # MLflow keeps a param's first value
    assert _trackio("maspo", ids["trackio"])[0] == expected
    assert _wandb(run, ids["wandb"])[0] == expected
    assert len(list(run.root.glob("wandb/offline-run-*"))) == 2  # one per process, one id

    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name("maspo").experiment_id
    named = client.search_runs([experiment], "attributes.run_name = 'report-resumed'")
    assert [r.info.run_id for r in named] == [ids["mlflow"]]


def test_a_tracker_that_is_not_installed_is_one_sentence_before_the_model_loads(
        tiny_model_dir, tmp_path):
    out = tmp_path / "never-made"
    code = ("import sys; sys.modules['wandb'] = None  # Python's mark: not importable\n"
            "from maspo.cli import main\n"
            f"sys.exit(main(['train', *{tiny_overrides(tiny_model_dir, out)!r}, "
            "'train.report_to=[tensorboard,wandb]']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "maspo: error: config key 'train.report_to' names wandb, which is not installed "
        "here; install it with: pip install 'maspo[wandb]'"]
    assert done.stdout == "" and not out.exists()  # nothing loaded, nothing written


@pytest.mark.parametrize("value, culprit", [("[comet]", "'comet'"),
                                            ("[wandb,wandb]", "'wandb'"),
                                            ("[none,mlflow]", "'none'")])
def test_report_to_names_known_trackers_once(value, culprit):
    from maspo.errors import UserError

    with pytest.raises(UserError, match=f"'train.report_to' lists {culprit}"):
        load_config(None, [f"train.report_to={value}"])


def test_report_to_none_writes_no_tracker_files(tiny_model_dir, tmp_path):
    run = RunDir(tmp_path / "quiet")
    overrides = tiny_overrides(tiny_model_dir, run.root, **{"train.steps": 1,
                                                             "train.report_to": "[none]"})
    assert main(["train", "--no-progress", *overrides]) == 0
    assert run.read_metrics() and not run.tensorboard.exists()
    assert not run.trackers.exists() and not (run.root / "wandb").exists()


def test_a_tracker_that_cannot_start_its_run_is_one_sentence(tmp_path, monkeypatch):
    from maspo.errors import UserError
    from maspo.trackers import Destination, RunLabel, Trackers

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchstore://here")  # MLflow knows no such
    destination = Destination(RunLabel("maspo", "no-store"), {}, tmp_path / "tb", tmp_path)
    with pytest.raises(UserError, match=r"^mlflow \(train.report_to\) could not start the "
                       r"run 'no-store': \w+: .*'nosuchstore://here'") as raised:
        Trackers(["tensorboard", "mlflow"], destination)
    assert "\n" not in str(raised.value)
