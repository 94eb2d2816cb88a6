"""One real verl actor update on CPU: verl's worker, FSDP2 engine and ppo_loss running a maspo
loss mode on a tiny Llama (the setup verl 0.9.1 needs without an accelerator is in
verl_cpu_actor.py; it runs in a subprocess because it starts torch.distributed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from integration_support import require

pytestmark = [pytest.mark.integration, pytest.mark.verl]

require("verl")
SCRIPT = os.path.join(os.path.dirname(__file__), "verl_cpu_actor.py")
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
