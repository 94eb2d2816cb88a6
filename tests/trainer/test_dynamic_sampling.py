"""Dynamic sampling (rollout.filter_groups): only groups with unequal rewards reach the
update, the bound on draws is kept and said, and a killed run resumes bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from maspo.cli import main
from maspo.config import load_config
from maspo.rollout import LocalSampler
from maspo.rollout import groups as groups_lib
from maspo.rollout.groups import batches_ahead, tied_groups
from maspo.testing import tiny_overrides
from maspo.trainer import train

RARE = {"reward.functions": "[maspo.testing:rare_reward]", "rollout.filter_groups": "true",
        "rollout.max_draws": 16}  # most groups of the tiny model are tied under it
CONSTANT = {"reward.functions": "[maspo.testing:constant_reward]",
            "rollout.filter_groups": "true", "rollout.max_draws": 2}  # every group is tied


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_tied_groups_are_the_groups_whose_rewards_are_all_equal():
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    assert tied_groups(rewards, 3).tolist() == [False, False, True]


def test_only_untied_groups_reach_the_update(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    train(load_config(None, tiny_overrides(tiny_model_dir, out, **RARE,
                                           **{"train.steps": 3})), progress=False)
    steps = [r for r in _jsonl(out / "metrics.jsonl") if r["step"] > 0]
    assert sum(r["dynamic/draws"] for r in steps) > len(steps)  # it had to draw again
    assert max(r["dynamic/tied_frac"] for r in steps) > 0.5
    for record in steps:  # tied groups (all 0 under this reward) lower the drawn mean
        seen = record["dynamic/draws"] * 2 * 4  # draws x P x G completions
        assert record["dynamic/reward_drawn"] * seen >= record["reward"] * 2 * 4 - 1e-9
        if record["dynamic/tied_frac"] > 0:
            assert record["dynamic/reward_drawn"] < record["reward"]
    drawn = 0
    for record in steps:
        assert record["dynamic/groups_kept"] == 2
        assert record["zero_adv_frac"] == 0.0  # no row of the update has advantage 0
        drawn += record["dynamic/draws"] * 2
        assert record["examples_seen"] == drawn  # every draw consumed P new prompts
    samples = _jsonl(out / "samples.jsonl")  # 2 prompts x 4: every trained row is saved
    for step in (1, 2, 3):
        rewards = torch.tensor([s["reward"] for s in samples if s["step"] == step])
        assert len(rewards) == 8
        by_prompt = rewards.reshape(4, 2).T  # (P, G): rows k*P + p are prompt p's
        assert not tied_groups(by_prompt.reshape(-1), 4).any()


def test_at_the_bound_the_step_trains_on_what_it_found_and_says_so(tiny_model_dir, tmp_path,
                                                                   capsys):
    out = tmp_path / "run"
    config = load_config(None, tiny_overrides(tiny_model_dir, out, **CONSTANT))
    train(config, progress=False)
    said = capsys.readouterr().out
    assert "step 1: 0 of 2 groups had unequal rewards after 2 draws (rollout.max_draws); " \
           "training on none: no update this step" in said
    steps = [r for r in _jsonl(out / "metrics.jsonl") if r["step"] > 0]
    assert [(r["dynamic/draws"], r["dynamic/groups_kept"], r["dynamic/tied_frac"])
            for r in steps] == [(2, 0, 1.0), (2, 0, 1.0)]
    assert all("loss" not in r for r in steps)
    assert all("reward" not in r and r["dynamic/reward_drawn"] == 0.5 for r in steps)
    trained = load_file(out / "final_model" / "model.safetensors")
    initial = load_file(tiny_model_dir / "model.safetensors")
    assert all(torch.equal(trained[k], initial[k]) for k in trained)  # no update was made


def test_at_the_bound_a_run_asked_to_stop_stops_with_a_sentence(tiny_model_dir, tmp_path,
                                                                capsys):
    args = ["train", "--no-progress", "rollout.at_max_draws=stop",
            *tiny_overrides(tiny_model_dir, tmp_path / "run", **CONSTANT)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("maspo: stopped at step 1: 0 of 2 groups had unequal rewards after "
                       "2 draws (rollout.max_draws); raise rollout.max_draws or set "
                       "rollout.at_max_draws=train")


def test_a_killed_run_with_dynamic_sampling_resumes_bit_for_bit(tiny_model_dir, tmp_path):
    env = dict(os.environ, PYTHONHASHSEED="0")

    def command(out, *extra):
        overrides = tiny_overrides(tiny_model_dir, out, **RARE, **{"train.steps": 4,
                                                                   "train.eval_every": 2})
        return [sys.executable, "-m", "maspo", "train", "--no-progress", *overrides, *extra]

    subprocess.run(command(tmp_path / "reference"), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "step-000002").is_dir():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(command(killed, "--resume"), env=env, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = "checkpoints/step-000004/weights.safetensors"
    a, b = load_file(tmp_path / "reference" / final), load_file(killed / final)
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in r.items() if not k.startswith("time/")}
             for r in _jsonl(tmp_path / "reference" / "metrics.jsonl")]
    assert [{k: v for k, v in r.items() if not k.startswith("time/")}
            for r in _jsonl(killed / "metrics.jsonl")] == strip


def test_the_training_reward_drawn_is_plotted_where_runs_filter_groups():
    from maspo.plots import panel_key

    filtered = {"maspo": [[{"step": 1, "reward": 0.6, "dynamic/reward_drawn": 0.1}]]}
    plain = {"grpo": [[{"step": 1, "reward": 0.4}]]}
    assert panel_key(filtered, "reward", "training reward") == (
        "dynamic/reward_drawn", "training reward (every completion drawn)")
    assert panel_key(plain, "reward", "training reward") == ("reward", "training reward")
    assert panel_key(filtered, "entropy", "entropy") == ("entropy", "entropy")


def test_batches_ahead_are_those_the_untied_share_says_are_needed():
    assert batches_ahead(8, 8, None, 4) == 1  # no share known yet: one
    assert batches_ahead(8, 8, 0.0, 4) == 4  # nothing untied so far: all that are left
    assert batches_ahead(8, 8, 3 / 32, 4) == 4  # 11 wanted, 4 left
    assert batches_ahead(8, 8, 0.5, 4) == 2
    assert batches_ahead(7, 8, 1 / 8, 3) == 3
    assert batches_ahead(1, 8, 0.9, 3) == 1
    assert batches_ahead(8, 8, 1.0, 4) == 1


SAME_LENGTH_ROWS = [{"question": f"What is {a} + {b}?", "answer": str(a + b)}
                    for a in range(1, 10) for b in range(1, 10)]  # prompts of one length


def test_draws_sampled_ahead_change_nothing_but_the_number_of_calls(tiny_model_dir, tmp_path,
                                                                    monkeypatch):
    """16-row draws (2 prompts x 8) of one prompt length on one thread: sampling the draws
    the untied share says are needed in one call gives the run that drawing one batch a
    call gives, bit for bit, in fewer calls; draws sampled ahead but not needed are
    counted in ``dynamic/draws_sampled`` alone."""
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in SAME_LENGTH_ROWS))
    calls = {}
    generate = LocalSampler.generate
    runs = {}
    for name, ahead in (("one", lambda *args: 1), ("ahead", batches_ahead)):
        monkeypatch.setattr(groups_lib, "batches_ahead", ahead)
        calls[name] = []
        monkeypatch.setattr(LocalSampler, "generate",
                            lambda self, prompts, n, *, seed, seen=calls[name]:
                            seen.append(len(prompts)) or generate(self, prompts, n, seed=seed))
        out = tmp_path / name
        train(load_config(None, tiny_overrides(
            tiny_model_dir, out, **{**RARE, "train.steps": 4, "rollout.group_size": 8,
                                    "rollout.max_draws": 6, "data.path": data,
                                    "data.test_size": 4})), progress=False)
        runs[name] = out
    one, ahead = (_jsonl(runs[name] / "metrics.jsonl") for name in ("one", "ahead"))
    assert max(calls["ahead"]) > 2 and len(calls["ahead"]) < len(calls["one"])
    assert max(calls["one"]) == 4  # the held-out evaluation's prompts, one call
    steps = [r for r in ahead if r["step"] > 0]
    assert sum(r["dynamic/draws"] for r in steps) > len(steps)  # draws were needed
    assert all(r["dynamic/draws_sampled"] >= r["dynamic/draws"] for r in steps)
    assert all(r["dynamic/draws_sampled"] == r["dynamic/draws"]
               for r in one if r["step"] > 0)

    def kept(records):
        return [{k: v for k, v in r.items()
                 if not k.startswith("time/") and k != "dynamic/draws_sampled"}
                for r in records]

    assert kept(ahead) == kept(one)
    a, b = (load_file(runs[name] / "final_model" / "model.safetensors") for name in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (runs["ahead"] / "samples.jsonl").read_text() == (
        runs["one"] / "samples.jsonl").read_text()
