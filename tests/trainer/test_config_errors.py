"""Invalid configs fail before the model loads, with one sentence naming the key (exit 2)."""

from __future__ import annotations

import pytest

from maspo.cli import main
from maspo.config import Config, load_config, to_dict
from maspo.errors import UserError
from maspo.losses import get_spec, make_params, names
from maspo.testing import tiny_overrides


@pytest.mark.parametrize(("override", "named"), [
    ("loss.nme=grpo", "'loss.nme'"),
    ("lossy.name=grpo", "'lossy'"),
    ("rollout.group_size=abc", "'rollout.group_size'"),
    ("rollout.group_size=1", "'rollout.group_size'"),
    ("rollout.top_p=1.5", "'rollout.top_p'"),
    ("optim.lr=-1", "'optim.lr'"),
    ("loss.name=ppo9", "'ppo9'"),
    ("loss.params.alhpa=0.3", "'alhpa'"),
    ("loss.params.sigma_base=0", "'sigma_base'"),
    ("loss.aggregation=sum", "'sum'"),
    ("data.task=sudoku", "'sudoku'"),
    ("data.task_settings.digitz=2", "'digitz'"),
    ("reward.functions=[nomodule:fn]", "'nomodule'"),
    ("model.lora.enabled=maybe", "'model.lora.enabled'"),
    ("loss.entropy_target=-1", "'loss.entropy_target'"),
    ("loss.entropy_coef_delta=0", "'loss.entropy_coef_delta'"),
    ("loss.entropy_coef_max=-0.1", "'loss.entropy_coef_max'"),
    ("loss.entropy_coef_min=2", "'loss.entropy_coef_min' (2.0) exceeds"),
    ("no_equals_sign", "'no_equals_sign'"),
])
def test_bad_override_exits_2_naming_the_key_before_loading_the_model(override, named, capsys):
    # the model path does not exist: the config error must be reported first
    code = main(["train", "model.path=/no/such/model", override])
    err = capsys.readouterr().err
    assert code == 2
    assert named in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_yaml_preset_is_named(tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text("loss:\n  name: grpo\noptim:\n  learning_rate: 1e-5\n")
    assert main(["train", "--config", str(preset)]) == 2
    assert "'optim.learning_rate'" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_presets_and_overrides_compose():
    config = load_config("grpo", ["rollout.group_size=4", "loss.params.clip_high=0.3",
                                               "optim.lr=1e-5"])
    assert config.loss.name == "grpo"
    assert config.rollout.group_size == 4
    assert config.loss.params["clip_high"] == 0.3
    assert config.optim.lr == 1e-5
    assert to_dict(load_config(None, [])) == to_dict(Config())


@pytest.mark.parametrize("objective", names())
def test_every_objective_ships_a_valid_preset_with_its_default_parameters(objective):
    config = load_config(objective)
    assert config.loss.name == objective
    assert make_params(objective, config.loss.params) == get_spec(objective).params()


def test_existing_run_is_not_overwritten_and_resume_checks_the_config(tiny_model_dir, tmp_path,
                                                                      capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 0, "precious": true}\n')
    assert main(["train", *tiny_overrides(tiny_model_dir, out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == '{"step": 0, "precious": true}\n'
    assert not (out / "config.yaml").exists()

    other = tmp_path / "other"
    assert main(["train", "--no-progress", *tiny_overrides(tiny_model_dir, other,
                                                           **{"train.steps": 1})]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", *tiny_overrides(tiny_model_dir, other,
                                                      **{"rollout.group_size": 2})]) == 2
    assert "rollout.group_size" in capsys.readouterr().err


def test_bad_data_row_is_named_and_a_failed_start_writes_nothing(tiny_model_dir, tmp_path,
                                                                  capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?"}\n')
    run = tmp_path / "run"
    code = main(["train", f"model.path={tiny_model_dir}", f"data.path={rows}",
                 "data.test_size=1", f"train.output_dir={run}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "rows.jsonl" in err and "2" in err and "answer" in err
    assert not run.exists()

    # after fixing the data, a missing model is named, and still no folder is left behind
    rows.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?", "answer": "4"}\n')
    code = main(["train", "model.path=/no/such/model", f"data.path={rows}", "data.test_size=1",
                 f"train.output_dir={run}"])
    assert code == 2 and "/no/such/model" in capsys.readouterr().err
    assert not run.exists()


def test_an_exponent_number_is_a_number_wherever_an_objective_parameter_is_written(tmp_path):
    # YAML 1.1 reads 1e-1 (no dot) as text; an objective parameter is a number all the same
    from maspo.objective_specs import parse_variant

    preset = tmp_path / "p.yaml"
    preset.write_text("loss:\n  name: maspo\n  params:\n    sigma_base: 1e-1\n")
    from_file = load_config(preset).loss.params
    from_override = load_config(None, ["loss.name=maspo", "loss.params.sigma_base=1e-1"])
    assert from_file == from_override.loss.params == {"sigma_base": 0.1}
    assert parse_variant("maspo:sigma_base=1e-1").params == {"sigma_base": 0.1}
    with pytest.raises(UserError, match="'sigma_base' must be a number, got 'nan'"):
        load_config(None, ["loss.name=maspo", "loss.params.sigma_base=nan"])


def test_maspo_config_refuses_the_lora_settings_training_would(capsys):
    """LoRA's rules are the config's: refused by `maspo config` before any model is resolved."""
    for command in ("config", "train"):
        assert main([command, "model.lora.enabled=true", "model.lora.dropout=0.1",
                     "model.path=/no/such/model"]) == 2
        err = capsys.readouterr().err
        assert "config key 'model.lora.dropout' must be 0, got 0.1" in err
        assert "dropout off" in err


def test_maspo_config_refuses_an_output_dir_that_holds_a_run(tmp_path, capsys):
    """A folder that already holds a run: refused by `maspo config` as by `maspo train`."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for command in ("config", "train"):
        assert main([command, f"train.output_dir={run}", "model.path=/no/such/model"]) == 2
        assert "already holds a run" in capsys.readouterr().err
