"""Objective specs and comparison arguments: parsed as documented, bad ones named in one
sentence before any training starts."""

from __future__ import annotations

import pytest
import yaml

from maspo.cli import main
from maspo.compare import run_config
from maspo.config import load_config, to_dict
from maspo.errors import UserError
from maspo.objective_specs import parse_seeds, parse_variants


def test_specs_split_on_commas_and_keep_their_parameters():
    variants = parse_variants(["grpo,clip_higher,maspo:mass_adaptive=false,risk_control=false",
                               "maspo:alpha=0.5", "dgpo:n=1e-1"])
    assert [(v.name, v.params) for v in variants] == [
        ("grpo", {}), ("clip_higher", {}),
        ("maspo", {"mass_adaptive": False, "risk_control": False}),
        ("maspo", {"alpha": 0.5}), ("dgpo", {"n": 0.1})]
    assert variants[2].spec == "maspo:mass_adaptive=false,risk_control=false"
    assert variants[2].slug == "maspo--mass_adaptive-false--risk_control-false"
    assert len({v.slug for v in variants}) == len(variants)


def test_params_merge_over_the_presets_only_for_its_own_objective():
    base = load_config("maspo")
    ablation, grpo = parse_variants(["maspo:mass_adaptive=false,grpo"])
    merged = run_config(base, ablation, 3, "out").loss
    assert merged.params == {**base.loss.params, "mass_adaptive": False}
    assert run_config(base, grpo, 3, "out").loss.params == {}
    assert run_config(base, grpo, 3, "out").train.seed == 3


@pytest.mark.parametrize(("text", "named"), [
    ("grpo,ppo9", "'ppo9'"),
    ("grpo,maspo:alhpa=0.3", "'maspo:alhpa=0.3'"),
    ("maspo:sigma_base=0", "'maspo:sigma_base=0'"),
    ("maspo:mass_adaptive=maybe", "'maspo:mass_adaptive=maybe'"),
    ("grpo,alpha=0.3", "'alpha=0.3'"),
    ("maspo:alpha", "'maspo:alpha'"),
    ("grpo,grpo", "'grpo'"),
    (",", "--objectives"),
])
def test_bad_specs_are_named(text, named):
    with pytest.raises(UserError, match=named):
        parse_variants([text])


@pytest.mark.parametrize("text", ["0,x", "0,0", "-1", ""])
def test_bad_seeds_are_rejected(text):
    with pytest.raises(UserError):
        parse_seeds(text)


@pytest.mark.parametrize(("options", "override", "named"), [
    (["--objectives", "grpo,maspo:alhpa=0.3"], [], "'maspo:alhpa=0.3'"),
    (["--objectives", "grpo", "--seeds", "0,zero"], [], "'zero'"),
    (["--objectives", "grpo"], ["train.seed=3"], "'train.seed=3'"),
    (["--objectives", "grpo"], ["loss.name=dgpo"], "'loss.name=dgpo'"),
    (["--objectives", "grpo"], ["rollout.group_size=1"], "'rollout.group_size'"),
    (["--objectives", "grpo", "--n", "2", "--k", "4"], [], "4"),
    (["--objectives", "grpo", "--target", "2"], [], "--target"),
])
def test_bad_comparisons_stop_before_any_training(tiny_base, tmp_path, capsys, options,
                                                  override, named):
    out = tmp_path / "cmp"
    argv = ["compare", "--out", str(out), *options, *tiny_base, *override]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1
    assert not (out / "runs").exists()


def test_a_folder_holding_another_comparison_is_refused(tiny_base, tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    other = to_dict(load_config(None, [*tiny_base, "optim.lr=0.5"]))
    (out / "compare.yaml").write_text(yaml.safe_dump({"base_config": other}))
    assert main(["compare", "--objectives", "grpo", "--out", str(out),
                 *tiny_base]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert not (out / "runs").exists()
