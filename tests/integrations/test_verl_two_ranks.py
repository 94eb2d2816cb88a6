"""verl's real actor update at two data-parallel ranks: two gloo processes, FSDP2 sharding the
tiny Llama across them, give the weights and the logged metrics of one rank on the same
global batch, for maspo, dgpo and verl's own vanilla loss in each of verl's loss_agg_modes
(verl_cpu_actor.py runs the worlds; each update is off-policy, so gates and clips act)."""

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
from safetensors.torch import load_file  # noqa: E402  (after the skip above)

SCRIPT = Path(__file__).with_name("verl_cpu_actor.py")
TIMEOUT_S = 900  # both worlds in one launch
LOSS_MODES = {"maspo": "maspo", "dgpo": "dgpo", "vanilla": None}  # mode: maspo's metric prefix
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-sum-norm",
             "seq-mean-token-mean")  # every mode of verl 0.9's agg_loss
CASES = {f"{mode}-{agg}": [f"actor_rollout_ref.actor.policy_loss.loss_mode={mode}",
                           f"actor_rollout_ref.actor.loss_agg_mode={agg}",
                           # SGD: weights differ by lr x the gradient difference (Adam's first
                           # step, g / |g|, would magnify a rounding difference in a tiny g)
                           "actor_rollout_ref.actor.optim.optimizer=SGD",
                           "actor_rollout_ref.actor.optim.lr=0.5"]
         for mode in LOSS_MODES for agg in AGG_MODES}
WEIGHT_TOL = 1e-6  # fp32: sums reduced in another order across the two ranks
# measured by the host, not by the update: differ between any two runs
HOST_METRICS = {"mfu", "perf/cpu_memory_used_gb", "perf/max_memory_allocated_gb",
                "perf/max_memory_reserved_gb"}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> Path:
    """Every case run in a world of one process and in a world of two."""
    work = tmp_path_factory.mktemp("verl-worlds")
    cases = work / "cases.json"
    cases.write_text(json.dumps(CASES))
    env = {**os.environ, "VERL_ENGINE_DEVICE": "cuda", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(SCRIPT), str(work), "--worlds", "2,1",
                           str(cases)], capture_output=True, text=True, env=env,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    return work


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_update_the_weights_one_rank_does(worlds, case):
    one = load_file(worlds / f"{case}-world1.safetensors")
    two = load_file(worlds / f"{case}-world2.safetensors")
    initial = load_file(worlds / "model" / "model.safetensors")
    assert one.keys() == two.keys() == initial.keys()
    largest = max((one[k] - two[k]).abs().max().item() for k in one)
    moved = max((one[k] - initial[k]).abs().max().item() for k in one)
    print(f"{case}: largest weight difference {largest:.1e} (update moved up to {moved:.1e})")
    assert largest <= WEIGHT_TOL
    assert moved > 1e3 * WEIGHT_TOL  # the update itself is far above the tolerance


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_log_the_metrics_one_rank_logs(worlds, case):
    one = json.loads((worlds / f"{case}-world1.json").read_text())
    two = json.loads((worlds / f"{case}-world2.json").read_text())
    assert one.keys() == two.keys()
    for key in one.keys() - HOST_METRICS:
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), key
    mode = case.split("-")[0]
    prefix = LOSS_MODES[mode]
    if prefix is not None:  # maspo's objective ran inside verl, off-policy
        assert one[f"actor/{prefix}/ratio_max"][0] > 1.0
        active = "gate_frac" if mode == "maspo" else "decay_frac"
        assert one[f"actor/{prefix}/{active}"][0] > 0
    else:  # verl's own loss clipped
        assert one["actor/pg_clipfrac"][0] > 0
    assert one["grad_norm"][0] > 0
