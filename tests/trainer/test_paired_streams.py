"""Common random numbers: runs of one seed with different objectives draw the same
candidate prompts at every step and sample their first step identically; the evaluation
before training is made once per seed and the last one is the final score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maspo.cli import main
from maspo.config import load_config
from maspo.data.splits import data_splits
from maspo.evaluate import heldout_seed
from maspo.parts import RunParts
from maspo.testing import tiny_overrides
from maspo.trainer import train

RARE = {"reward.functions": "[maspo.testing:rare_reward]", "rollout.filter_groups": "true",
        "rollout.max_draws": 4, "train.steps": 3, "train.samples_per_step": 8,
        "train.eval_every": 1}  # most groups are tied: steps draw again, and part ways


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _config(model_dir, out, objective: str, **extra):
    return load_config(None, tiny_overrides(model_dir, out, **RARE, **extra,
                                            **{"loss.name": objective}))


@pytest.fixture(scope="module")
def two_objectives(tiny_model_dir, tmp_path_factory):
    """grpo and maspo at seed 0 (the second reads the first's evaluation before training)."""
    root = tmp_path_factory.mktemp("paired")
    cache = root / "step0" / "seed-0.json"
    for objective in ("grpo", "maspo"):
        train(_config(tiny_model_dir, root / objective, objective), progress=False,
              step0_cache=cache)
    return root


def test_two_objectives_sample_their_first_step_bit_identically(two_objectives):
    grpo, maspo = (_jsonl(two_objectives / o / "samples.jsonl") for o in ("grpo", "maspo"))
    first = [s for s in grpo if s["step"] == 1]
    assert first and first == [s for s in maspo if s["step"] == 1]
    records = {o: _jsonl(two_objectives / o / "metrics.jsonl") for o in ("grpo", "maspo")}
    one = [{k: v for k, v in r.items() if k.startswith(("reward", "dynamic/"))}
           for o in ("grpo", "maspo") for r in records[o] if r["step"] == 1]
    assert one[0] and one[0] == one[1]  # the same draws, the same rewards
    later = [(s["prompt"], s["completion"]) for s in grpo if s["step"] > 1]
    assert later != [(s["prompt"], s["completion"]) for s in maspo if s["step"] > 1]


def test_every_step_trains_on_prompts_of_its_own_candidate_slots(two_objectives,
                                                                tiny_model_dir, tmp_path):
    config = _config(tiny_model_dir, tmp_path / "x", "grpo")
    slots = data_splits(config.data, 0).train_slots()
    p, draws = config.rollout.prompts_per_step, config.rollout.max_draws
    for objective in ("grpo", "maspo"):
        samples = _jsonl(two_objectives / objective / "samples.jsonl")
        for step in (1, 2, 3):
            start = (step - 1) * draws * p  # the step's candidates: D draws of P slots
            candidates = {ex.prompt for ex in slots.take(start, draws * p)}
            trained = {s["prompt"] for s in samples if s["step"] == step}
            assert trained and trained <= candidates


def test_slots_are_the_same_whatever_was_taken_before(tiny_model_dir, tmp_path):
    config = _config(tiny_model_dir, tmp_path / "x", "grpo")
    in_order = data_splits(config.data, 0).train_slots()
    expected = [in_order.take(i, 1)[0] for i in range(12)]
    jumped = data_splits(config.data, 0).train_slots()
    assert jumped.take(8, 4) == expected[8:] and jumped.take(0, 8) == expected[:8]


def test_the_first_slot_of_a_draw_depends_on_step_and_draw_only(tiny_model_dir, tmp_path):
    config = _config(tiny_model_dir, tmp_path / "x", "grpo")
    parts = RunParts.build(config)
    assert [parts.first_slot(t, d) for t, d in ((1, 0), (1, 3), (2, 0), (3, 1))] == [
        0, 6, 8, 18]  # P = 2, D = 4


def test_the_evaluation_before_training_is_made_once_per_seed(two_objectives):
    first = {o: _jsonl(two_objectives / o / "metrics.jsonl")[0] for o in ("grpo", "maspo")}
    assert "eval/shared" not in first["grpo"] and first["grpo"]["time/eval"] > 0
    assert first["maspo"]["eval/shared"] == 1 and first["maspo"]["time/eval"] == 0.0
    assert first["maspo"]["eval/accuracy"] == first["grpo"]["eval/accuracy"]
    saved = json.loads((two_objectives / "step0" / "seed-0.json").read_text())
    assert saved["accuracy"] == first["grpo"]["eval/accuracy"]


def test_a_shared_evaluation_of_other_settings_is_not_reused(two_objectives, tiny_model_dir,
                                                             tmp_path):
    out = tmp_path / "more-samples"
    train(_config(tiny_model_dir, out, "grpo", **{"train.eval_samples": 3}), progress=False,
          step0_cache=two_objectives / "step0" / "seed-0.json")
    first = _jsonl(out / "metrics.jsonl")[0]
    assert "eval/shared" not in first and first["time/eval"] > 0


def test_the_last_evaluation_is_kept_as_the_final_one(two_objectives):
    run = two_objectives / "grpo"
    final = json.loads((run / "final_eval.json").read_text())
    last = _jsonl(run / "metrics.jsonl")[-1]
    assert final["settings"]["seed"] == heldout_seed(0) and final["settings"]["n"] == 2
    correct = [c for problem in final["correct"] for c in problem]
    assert sum(correct) / len(correct) == pytest.approx(last["eval/accuracy"], abs=1e-12)
    assert final["eval_time_s"] == last["time/eval"]
    # what the model wrote is kept beside each verdict, and the answers come from it
    assert [len(c) for c in final["completions"]] == [len(c) for c in final["correct"]]
    pairs = [(a, text) for answers, texts in zip(final["answers"], final["completions"])
             for a, text in zip(answers, texts)]
    assert all(isinstance(text, str) and (a is None or a in text) for a, text in pairs)


def test_compare_scores_each_run_once_when_its_settings_match(tiny_model_dir, tmp_path):
    out = tmp_path / "cmp"
    base = tiny_overrides(tiny_model_dir, **{"train.eval_every": 1})
    assert main(["compare", "--objectives", "grpo,maspo", "--seeds", "3", "--out", str(out),
                 "--n", "2", "--no-progress", *base]) == 0
    runs = {o: out / "runs" / o / "seed-3" for o in ("grpo", "maspo")}
    for run in runs.values():  # the final evaluation is the trainer's last one
        final = json.loads((run / "final_eval.json").read_text())
        assert final["eval_time_s"] == _jsonl(run / "metrics.jsonl")[-1]["time/eval"]
    firsts = [_jsonl(run / "metrics.jsonl")[0] for run in runs.values()]
    assert [f.get("eval/shared") for f in firsts] == [None, 1]
    shared = json.loads((out / "results.json").read_text())["step0_shared"]
    assert shared["shared"] == 1 and shared["measured"] == 1
