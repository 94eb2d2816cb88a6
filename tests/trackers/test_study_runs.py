"""`maspo compare` and `maspo probe` log each run of a study under one project (MLflow:
experiment) named after the study folder, each run named by objective and seed and grouped
by objective, so a tracker's own views compare them; values read back from the trackers."""

from __future__ import annotations

import json
import math

from maspo.cli import main
from maspo.run import RunDir
from maspo.testing import tiny_overrides


def _mlflow_runs(experiment: str) -> dict[str, object]:
    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    return {r.info.run_name: r for r in client.search_runs([found.experiment_id])}


def _mlflow_history(run_id: str, key: str) -> dict[int, float]:
    from mlflow import MlflowClient

    return {m.step: m.value for m in MlflowClient().get_metric_history(run_id, key)}


def test_compare_logs_each_run_by_objective_and_seed(tiny_model_dir, tmp_path):
    out = tmp_path / "study-compare"
    assert main(["compare", "--objectives", "grpo,cispo", "--seeds", "0,1", "--out", str(out),
                 "--n", "1", "--no-progress", *tiny_overrides(tiny_model_dir, **{
                     "train.steps": 2, "train.eval_every": 1,
                     "train.report_to": "[mlflow,trackio]"})]) == 0
    names = {f"{o}-seed{s}": (o, s) for o in ("grpo", "cispo") for s in (0, 1)}
    runs = _mlflow_runs("study-compare")
    assert runs.keys() == names.keys()
    from trackio import SQLiteStorage

    assert sorted(r["name"] for r in SQLiteStorage.get_run_records("study-compare")) == \
        sorted(names)
    for name, (objective, seed) in names.items():
        mlflow_run = runs[name]
        assert mlflow_run.data.tags["group"] == objective
        assert mlflow_run.data.params["loss.name"] == objective
        assert mlflow_run.data.params["train.seed"] == str(seed)
        records = RunDir(out / "runs" / objective / f"seed-{seed}").read_metrics()
        assert _mlflow_history(mlflow_run.info.run_id, "eval/accuracy") == {
            r["step"]: r["eval/accuracy"] for r in records}
        assert _mlflow_history(mlflow_run.info.run_id, "reward") == {
            r["step"]: r["reward"] for r in records if "reward" in r}
        logged = {row["step"]: row["eval/accuracy"]
                  for row in SQLiteStorage.get_logs("study-compare", name)}
        assert logged == {r["step"]: r["eval/accuracy"] for r in records}


def test_probe_logs_each_objective_and_seed_as_a_run(tiny_model_dir, tmp_path):
    out = tmp_path / "study-probe"
    assert main(["probe", "--objectives", "grpo,maspo", "--seeds", "0", "--out", str(out),
                 "--entropy-steps", "2", *tiny_overrides(tiny_model_dir, **{
                     "optim.updates_per_step": 2, "rollout.prompts_per_step": 2,
                     "train.report_to": "[mlflow,tensorboard]"})]) == 0
    saved = json.loads((out / "probes.json").read_text())["seeds"]["0"]
    runs = _mlflow_runs("study-probe")
    assert runs.keys() == {"grpo-seed0", "maspo-seed0"}
    for objective, values in saved.items():
        run = runs[f"{objective}-seed0"]
        assert run.data.params["loss.name"] == objective
        finite = {k: v for k, v in values.items() if math.isfinite(v)}
        assert {"kept_share", "entropy_drift"} <= finite.keys()
        assert run.data.metrics == finite  # each measure, once, at step 0
        assert _mlflow_history(run.info.run_id, "entropy_drift") == {0: values["entropy_drift"]}
        assert list((out / "tensorboard" / f"{objective}-seed0").glob("events.out.tfevents.*"))
