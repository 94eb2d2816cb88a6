"""bench/study_checks.py reads a comparison folder as compare writes it (results.json with
runs/<objective>/seed-<s>/metrics.jsonl) and prints what its figures mean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "study_checks.py"
AUC = {"grpo": [0.20, 0.18, 0.22, 0.15, 0.19, 0.25],
       "maspo": [0.17, 0.19, 0.18, 0.12, 0.02, 0.20]}
FINAL = {"grpo": [0.25, 0.20, 0.30, 0.18, 0.28, 0.31],
         "maspo": [0.22, 0.26, 0.21, 0.10, 0.01, 0.27]}
STEP0 = 0.04
ENTROPY = {"grpo": [0.9, 0.5, 0.3], "maspo": [0.9, 0.3, 0.1]}


def _folder(tmp_path: Path) -> Path:
    out = tmp_path / "study"
    runs = []
    for objective in ("grpo", "maspo"):
        for seed in range(6):
            run_dir = out / "runs" / objective / f"seed-{seed}"
            run_dir.mkdir(parents=True)
            lines = [{"step": step + 1, "entropy": value + 0.004 * seed, "reward": 0.1}
                     for step, value in enumerate(ENTROPY[objective])]
            lines.append({"step": 3, "eval/accuracy": 0.2})  # an evaluation line
            run_dir.joinpath("metrics.jsonl").write_text(
                "".join(json.dumps(line) + "\n" for line in lines))
            final = FINAL[objective][seed]
            # compare records run_dir relative to where it ran, not to this folder
            runs.append({"objective": objective, "seed": seed, "auc": AUC[objective][seed],
                         "avg@1": final, "gain": final - STEP0,
                         "run_dir": f"elsewhere/study/runs/{objective}/seed-{seed}"})
    runs.append({"objective": "maspo", "seed": 6, "auc": None, "avg@1": None, "gain": None,
                 "run_dir": "elsewhere/study/runs/maspo/seed-6"})  # unfinished: left out
    (out / "results.json").write_text(json.dumps({"runs": runs}))
    return out


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error", str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_study_checks_prints_the_secondary_readings(tmp_path):
    done = _run(_folder(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "maspo - grpo, 6 paired seeds; collapsed (an arm below its step 0): [4]"
    auc = np.subtract(AUC["maspo"], AUC["grpo"])
    p = stats.wilcoxon(auc).pvalue
    kept = np.delete(auc, 4)
    half = stats.t.ppf(0.975, 4) * kept.std(ddof=1) / np.sqrt(5)
    assert lines[1] == (
        f"curve area maspo {np.mean(AUC['maspo']):.3f}  grpo {np.mean(AUC['grpo']):.3f}  "
        f"difference < 0 in 5, > 0 in 1 of 6  Wilcoxon p {p:.3f}  without collapsed: "
        f"{kept.mean():+.3f} [{kept.mean() - half:+.3f}, {kept.mean() + half:+.3f}]")
    assert lines[2].startswith("final      maspo 0.178  grpo 0.253  difference < 0 in 5, > 0 in 1")
    # median over seeds 0-5 of value + 0.004 * seed: value + 0.01
    assert lines[3] == "median entropy by step, grpo   1:0.91 2:0.51 3:0.31"
    assert lines[4] == "median entropy by step, maspo  1:0.91 2:0.31 3:0.11"


def test_study_checks_refuses_a_folder_without_results(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"study_checks: {str(tmp_path / 'results.json')!r} does not exist (run maspo compare "
        "first)"]


def test_study_checks_needs_three_shared_seeds(tmp_path):
    out = _folder(tmp_path)
    data = json.loads((out / "results.json").read_text())
    data["runs"] = [r for r in data["runs"] if r["objective"] == "grpo" or r["seed"] < 2]
    (out / "results.json").write_text(json.dumps(data))
    done = _run(out, "--objective", "maspo")
    assert done.returncode == 2
    assert done.stderr.strip() == "study_checks: maspo and grpo share 2 finished seeds; need 3"


def test_study_checks_names_a_run_without_its_metrics(tmp_path):
    out = _folder(tmp_path)
    (out / "runs" / "maspo" / "seed-2" / "metrics.jsonl").unlink()
    done = _run(out)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"study_checks: {str(out / 'runs' / 'maspo' / 'seed-2')!r} "
                                   "is not a run directory (no metrics.jsonl)")
