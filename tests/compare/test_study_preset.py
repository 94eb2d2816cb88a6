"""The shipped study preset: loads, and every objective of the README's study runs on it."""

from __future__ import annotations

from pathlib import Path

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
