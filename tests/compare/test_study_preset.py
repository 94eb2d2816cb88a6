"""The shipped study presets: they load, every objective of the README's study runs on
them, and the sequential study's regime never repeats a prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from maspo.compare import run_config
from maspo.config import load_config
from maspo.objective_specs import parse_variants

PRESET = Path(__file__).resolve().parents[2] / "maspo" / "presets" / "study.yaml"
STUDY = "grpo,clip_higher,dgpo,maspo,maspo:mass_adaptive=false,maspo:risk_control=false"


def test_study_preset_is_a_trust_region_setting_for_every_objective(tmp_path):
    base = load_config(PRESET)
    assert 4 <= base.optim.updates_per_step <= 16  # many updates per rollout
    assert base.optim.lr > 2e-5 and base.rollout.max_new_tokens >= 16
    # every sample carries signal: tied groups are redrawn
    assert base.rollout.filter_groups and base.rollout.max_draws > 1
    # evaluation noise is not the limit: at least 200 held-out prompts x 4 samples
    assert base.data.test_size >= 200 and base.train.eval_samples >= 4
    assert 0 < base.train.eval_every < base.train.steps  # a curve, not two points
    # harder than the embedded default (+, x): subtraction brings negative answers
    assert set(base.data.task_settings["ops"]) == set("+-x")
    variants = parse_variants([STUDY])
    assert len(variants) == 6
    for variant in variants:
        config = run_config(base, variant, 0, tmp_path / variant.slug)
        assert config.loss.name == variant.name and config.optim == base.optim


@pytest.mark.parametrize("name", ["study_fresh", "study_two_digit"])
def test_the_sequential_study_regime_never_repeats_a_prompt(tmp_path, name):
    from maspo.data.splits import data_splits

    base = load_config(PRESET.with_name(f"{name}.yaml"))
    r, t = base.rollout, base.train
    assert base.data.test_size >= 200 and r.filter_groups and base.optim.updates_per_step > 1
    evaluated = [0, *range(t.eval_every, t.steps + 1, t.eval_every)]
    assert len(evaluated) >= 5 and evaluated[-1] == t.steps  # a curve of five points
    read = t.steps * r.max_draws * r.prompts_per_step  # every slot a run may draw
    for seed in range(3):
        splits = data_splits(base.data, seed)
        heldout = {ex.prompt for ex in splits.heldout}
        prompts = [ex.prompt for ex in splits.train_slots().take(0, read)]
        assert len(set(prompts)) == read and not heldout & set(prompts)
    for variant in parse_variants(["grpo,maspo"]):
        assert run_config(base, variant, 0, tmp_path / variant.slug).train.threads == 1
