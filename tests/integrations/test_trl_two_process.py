"""MaspoGRPOTrainer in two CPU processes (gloo, launched by torchrun as accelerate would):
the same weights as TRL's own GRPOTrainer under the same launch for every loss_type, and
maspo's metrics logged as their reduction over both processes (trl_two_process.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from integration_support import require

pytestmark = [pytest.mark.integration, pytest.mark.trl]

require("trl")
import torch  # noqa: E402  (after the skip above)
from safetensors.torch import load_file  # noqa: E402

from maspo.integrations.trl import NORMALISATIONS  # noqa: E402

SCRIPT = Path(__file__).with_name("trl_two_process.py")
WORLD = 2
TIMEOUT_S = 600  # 11 short trainings in one launch; ~1 min on a 2-core machine
WEIGHT_TOL = 1e-5  # fp32: the two losses differ only in rounding (see test_trl_trainer.py)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trl-two-process")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}",
         "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(SCRIPT), str(out)],
        capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return out


def _history(out: Path, run: str) -> dict:
    return json.loads((out / f"{run}.json").read_text())


@pytest.mark.parametrize("loss_type", list(NORMALISATIONS))
def test_two_processes_train_to_trl_grpo_trainers_weights(runs, loss_type):
    theirs = load_file(runs / f"trl-{loss_type}.safetensors")
    ours = load_file(runs / f"maspo-grpo-{loss_type}.safetensors")
    assert ours.keys() == theirs.keys()
    largest = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    others = [load_file(runs / f"trl-{t}.safetensors") for t in NORMALISATIONS if t != loss_type]
    moved = min(max((ours[k] - other[k]).abs().max().item() for k in ours) for other in others)
    print(f"{loss_type}: largest weight difference to TRL {largest:.2e}")
    assert largest <= WEIGHT_TOL
    assert moved > 100 * WEIGHT_TOL  # another normalisation trains to other weights
    for run in (f"trl-{loss_type}", f"maspo-grpo-{loss_type}"):
        history = _history(runs, run)
        assert history["world"] == WORLD  # accelerate's multi-process CPU world, over gloo
        assert (history["distributed"], history["backend"]) == ("MULTI_CPU", "gloo")
        assert [h["step"] for h in history["log"] if "loss" in h] == [1, 2]
    logged = [[h.get("loss") for h in _history(runs, r)["log"] if "loss" in h]
              for r in (f"trl-{loss_type}", f"maspo-grpo-{loss_type}")]
    assert logged[0] == pytest.approx(logged[1], rel=1e-4, abs=1e-6)
    ours_log = [h for h in _history(runs, f"maspo-grpo-{loss_type}")["log"] if "loss" in h]
    assert ours_log[0]["grpo/ratio_max"] == 1.0  # maspo's objective ran, on-policy first
    assert ours_log[1]["grpo/clip_frac"] > 0  # and its clip acted on the reused rollout


def test_maspo_metrics_are_logged_reduced_over_both_processes(runs):
    log = [h for h in _history(runs, "maspo-maspo")["log"] if "maspo/ratio_mean" in h]
    local = [json.loads((runs / f"maspo-maspo-rank{r}.json").read_text()) for r in range(WORLD)]
    calls = len(local[0])
    assert len(log) == 2 and calls == len(local[1]) == 4  # 2 steps x 2 micro-batches
    first, second = log
    assert first["maspo/ratio_max"] == pytest.approx(1.0)  # sampled by this very policy
    assert second["maspo/ratio_max"] > 1.0 and second["maspo/gate_frac"] > 0
    # each process computed its own values; the log holds their mean (max for maxima) over
    # processes, averaged over the step's two micro-batches
    for step, entry in enumerate(log):
        window = range(2 * step, 2 * step + 2)
        for key in local[0][0]:
            per_call = [torch.tensor([local[r][c][key] for r in range(WORLD)]) for c in window]
            reduce = torch.max if key.endswith("_max") else torch.mean
            expected = sum(reduce(values).item() for values in per_call) / len(per_call)
            assert entry[f"maspo/{key}"] == pytest.approx(expected, rel=1e-5, abs=1e-7), key
    differs = [key for key in local[0][0]
               if local[0][0][key] != pytest.approx(local[1][0][key], rel=1e-3)]
    assert differs  # the two processes saw different completions: the reduction matters
