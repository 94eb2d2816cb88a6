"""A run SIGKILLed mid-way and resumed ends with bit-identical weights, prompts and
completions to an unkilled run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from maspo.testing import tiny_overrides

STEPS = 4
KILL_TIMEOUT_S = 120


def _command(model_dir, out, *extra, precision="fp32"):
    overrides = tiny_overrides(model_dir, out, **{"train.steps": STEPS,
                                                  "train.eval_every": 2,
                                                  "train.precision": precision})
    return [sys.executable, "-m", "maspo", "train", "--no-progress", *overrides, *extra]


def _steps_logged(out) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:  # a line being written right now
            pass
    return steps


@pytest.mark.parametrize(("kill_after_step", "precision"), [(1, "fp32"), (3, "fp32"),
                                                           (3, "bf16")])
def test_sigkill_then_resume_matches_an_unkilled_run_bit_for_bit(tiny_model_dir, tmp_path,
                                                                 kill_after_step, precision):
    """Also under bf16, whose passes share autocast's bf16 copies of the weights within a
    step (a resumed run casts the same weights to the same copies)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    reference = tmp_path / "reference"
    subprocess.run(_command(tiny_model_dir, reference, precision=precision), check=True,
                   env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(tiny_model_dir, killed, precision=precision), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while kill_after_step not in _steps_logged(killed):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _steps_logged(killed)[-1] < STEPS  # really interrupted

    resumed = subprocess.run(_command(tiny_model_dir, killed, "--resume", precision=precision),
                             env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    final = f"checkpoints/step-{STEPS:06d}/weights.safetensors"
    a, b = load_file(reference / final), load_file(killed / final)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _steps_logged(killed) == list(range(STEPS + 1))  # each step logged exactly once
    # the resumed run drew the prompts and completions of the unbroken one at every step
    samples = [(r / "samples.jsonl").read_text().splitlines() for r in (reference, killed)]
    assert samples[0] and samples[0] == samples[1]
