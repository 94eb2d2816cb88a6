"""Adaptive entropy control (``loss.entropy_target``): the controller's rule by hand, and on
a tiny real model the coefficient rising while entropy is under the target, entropy kept
up against a run without a bonus, the coefficient logged and resumed bit for bit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from maspo.config import load_config
from maspo.entropy_control import EntropyCoef, EntropyTarget
from maspo.testing import tiny_overrides
from maspo.trainer import train

CONTROL = EntropyTarget(target=2.0, delta=0.25, coef_min=0.0, coef_max=0.6)


def test_the_rule_by_hand():
    start = EntropyCoef(0.1)
    assert start.applied(CONTROL) == 0.0  # nothing measured yet: the bonus waits
    assert start.applied(None) == 0.1  # a fixed coefficient always applies
    low = start.after_update(CONTROL, 1.5)  # under the target: up by delta
    assert (low.coef, low.measured) == (0.35, 1.5) and low.applied(CONTROL) == 0.35
    capped = low.after_update(CONTROL, 2.0)  # at the target counts as under; capped at max
    assert capped.coef == 0.6 and capped.applied(CONTROL) == 0.6
    high = capped.after_update(CONTROL, 2.5)  # above: down by delta, and the gate shuts
    assert high.coef == 0.35 and high.applied(CONTROL) == 0.0
    floor = EntropyCoef(0.1, 3.0).after_update(CONTROL, 3.0)
    assert floor.coef == 0.0  # floored at min
    assert start.after_update(None, 1.0) is start  # a fixed coefficient never moves


def _run(model_dir, out, **extra) -> list[dict]:
    settings = {"train.steps": 6, "train.save_every": 0, "optim.lr": 0.03,
                "rollout.max_new_tokens": 8, "loss.name": "grpo", **extra}
    train(load_config(None, tiny_overrides(model_dir, out, **settings)), progress=False)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["step"] > 0]


def test_the_coefficient_rises_under_the_target_and_holds_entropy_up(tiny_model_dir,
                                                                     tmp_path):
    plain = _run(tiny_model_dir, tmp_path / "plain")  # entropy bonus fixed at 0
    # the tiny model's entropy (~4.6 nats) starts under a target of 10: c rises each update
    steered = _run(tiny_model_dir, tmp_path / "steered", **{
        "loss.entropy_target": 10.0, "loss.entropy_coef_delta": 0.05})
    coefs = [r["entropy_coef"] for r in steered]
    assert coefs == pytest.approx([0.1 * s for s in range(1, 7)])  # K = 2 updates a step
    assert "entropy_coef" not in plain[0]  # only logged when a target is set
    # same first rollout; then the bonus holds entropy up where plain GRPO lets it fall
    assert steered[0]["entropy"] == plain[0]["entropy"]
    fall_plain = plain[0]["entropy"] - plain[-1]["entropy"]
    fall_steered = steered[0]["entropy"] - steered[-1]["entropy"]
    assert fall_plain > 1.0 and fall_steered < fall_plain / 2, (fall_plain, fall_steered)


def test_the_coefficient_decays_to_its_floor_above_the_target(tiny_model_dir, tmp_path):
    records = _run(tiny_model_dir, tmp_path / "run", **{
        "train.steps": 3, "loss.entropy_target": 0.5, "loss.entropy_coef": 0.012,
        "loss.entropy_coef_delta": 0.005})
    assert [r["entropy_coef"] for r in records] == pytest.approx([0.002, 0.0, 0.0])


def test_a_resumed_run_continues_the_controller_bit_for_bit(tiny_model_dir, tmp_path):
    adaptive = {"loss.entropy_target": 10.0, "loss.entropy_coef_delta": 0.05,
                "train.save_every": 2, "train.eval_every": 2, "train.steps": 4}
    whole = tmp_path / "whole"
    train(load_config(None, tiny_overrides(tiny_model_dir, whole, **adaptive)),
          progress=False)
    parts = tmp_path / "parts"
    train(load_config(None, tiny_overrides(tiny_model_dir, parts,
                                           **{**adaptive, "train.steps": 2})), progress=False)
    state = json.loads((parts / "checkpoints/step-000002/trainer_state.json").read_text())
    assert state["entropy_coef"] == pytest.approx(0.2) and state["entropy_measured"] > 0
    train(load_config(None, tiny_overrides(tiny_model_dir, parts, **adaptive)), resume=True,
          progress=False)

    def logged(run):
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert logged(parts) == logged(whole)  # entropy_coef included, every step
    final = "checkpoints/step-000004/weights.safetensors"
    a, b = load_file(whole / final), load_file(parts / final)
    assert all(torch.equal(a[k], b[k]) for k in a)
