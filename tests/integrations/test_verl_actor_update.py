"""One real verl actor update on CPU: verl's worker, FSDP2 engine and ppo_loss running a maspo
loss mode on a tiny Llama (the setup verl 0.9.1 needs without an accelerator is in
verl_cpu_actor.py; it runs in a subprocess because it starts torch.distributed), then
`maspo eval` scoring the Hugging Face model folder verl's worker saved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from integration_support import require

pytestmark = [pytest.mark.integration, pytest.mark.verl]

require("verl")
SCRIPT = os.path.join(os.path.dirname(__file__), "verl_cpu_actor.py")
PUBLISHED = Path(__file__).parents[1] / "data" / "published"
TIMEOUT_S = 300  # ~20 s on a 2-core machine


def test_verl_worker_runs_one_actor_update_with_a_maspo_loss_mode(tmp_path):
    env = {**os.environ, "VERL_ENGINE_DEVICE": "cuda", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, SCRIPT, str(tmp_path),
                           "actor_rollout_ref.actor.policy_loss.loss_mode=maspo"],
                          capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    # the maspo objective ran inside verl's ppo_loss (its metrics, verl's prefix)
    assert "actor/maspo/gate_frac" in metrics and "actor/maspo/sigma_mean" in metrics
    # old log-probs scored by the same worker: the first update is exactly on-policy
    assert metrics["actor/maspo/ratio_max"] == [1.0]
    # at ratio 1 the token-mean loss is -mean(A) over response tokens
    assert metrics["actor/pg_loss"][0] == pytest.approx(metrics["_expected_unit_ratio_loss"],
                                                        rel=1e-6)
    assert metrics["grad_norm"][0] > 0
    assert metrics["_moved_params"] > 0  # the optimizer step changed the weights

    # the recipe's last step on what verl saved: its HF model folder holds the updated weights
    from safetensors.torch import load_file

    from maspo.cli import main

    saved = tmp_path / "global_step_1" / "actor" / "huggingface"
    trained, initial = (load_file(folder / "model.safetensors")
                        for folder in (saved, tmp_path / "model"))
    assert trained.keys() == initial.keys()
    largest = max((trained[k] - initial[k]).abs().max().item() for k in initial)
    assert 0.005 < largest < 0.011  # one AdamW step at lr 0.01 moves a weight by about lr
    out = tmp_path / "eval"
    assert main(["eval", str(saved), "--data", str(PUBLISHED / "math500.jsonl"), "--n", "2",
                 "--max-new-tokens", "4", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["datasets"]["math500"]["problems"] == 3
