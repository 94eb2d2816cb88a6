"""`maspo config`, `--version`, `--help`, options anywhere, and config errors that come
back before torch is imported."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import yaml

from maspo import __version__
from maspo.cli import main
from maspo.config import BOUNDS, Config, load_config
from maspo.losses import get_spec, make_params
from maspo.testing import tiny_overrides


def test_config_prints_the_resolved_config_with_the_objective_defaults(capsys):
    assert main(["config", "--config", "grpo", "loss.params.clip_high=0.28",
                 "rollout.group_size=4"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    defaults = dataclasses.asdict(make_params("grpo", {}))
    assert shown["loss"]["params"] == {**defaults, "clip_high": 0.28}
    assert set(defaults) - {"clip_high"}  # the defaults really are filled in
    assert shown["loss"]["aggregation"] == get_spec("grpo").aggregation
    assert shown["rollout"]["group_size"] == 4
    assert shown["optim"]["lr"] == Config().optim.lr


def test_options_may_stand_between_overrides(capsys):
    assert main(["config", "rollout.group_size=4", "--config", "dgpo", "train.steps=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["loss"]["name"], shown["rollout"]["group_size"],
            shown["train"]["steps"]) == ("dgpo", 4, 3)


def test_version_and_help_list_what_a_newcomer_needs(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"maspo {__version__}"
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for key in ("optim.lr=2.0e-05", "rollout.group_size=8", "train.device=auto",
                "model.lora.rank=16", "grpo"):
        assert key in text, key


def test_presets_load_by_name_from_the_installed_package():
    assert load_config("maspo").loss.name == "maspo"
    import maspo

    shipped = {p.stem for p in (__import__("pathlib").Path(maspo.__file__).parent /
                                "presets").glob("*.yaml")}
    assert "grpo" in shipped and "maspo" in shipped


def test_a_range_error_comes_back_before_torch_is_imported():
    code = ("import sys; from maspo.cli import main; "
            "code = main(['train', 'optim.lr=inf', 'model.path=/no/such/model']); "
            "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "'optim.lr'" in done.stderr


def _numeric(annotation) -> bool:
    args = typing.get_args(annotation)
    return annotation in (int, float) or any(_numeric(a) for a in args if a is not type(None))


def _numeric_keys(cls=Config, prefix=""):
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _numeric_keys(hint, f"{prefix}{f.name}.")
        elif _numeric(hint):
            yield f"{prefix}{f.name}"


def test_every_numeric_config_key_has_its_range_checked():
    missing = [key for key in _numeric_keys() if key not in BOUNDS]
    assert not missing, f"add these keys to maspo.config.BOUNDS: {missing}"
    assert "optim.betas" in BOUNDS and "train.seed" in BOUNDS


def test_the_device_and_dtype_are_said_at_the_start(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_overrides(tiny_model_dir, out, **{"train.steps": 1}),
                 "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "maspo: training maspo on cpu (float32 weights)"


def test_a_reward_function_that_raises_is_named_with_its_line(tiny_model_dir, tmp_path,
                                                              monkeypatch, capsys):
    module = "cli_brittle_rewards"  # a name no other test imports (modules are cached)
    (tmp_path / f"{module}.py").write_text(
        "def brittle(completions, **columns):\n"
        "    return [float(c) for c in completions]  # most completions are not numbers\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)  # removed again afterwards
    out = tmp_path / "run"
    try:
        code = main(["train", "--no-progress", *tiny_overrides(
            tiny_model_dir, out, **{"reward.functions": f"[{module}:brittle]"})])
    finally:
        sys.modules.pop(module, None)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"'{module}:brittle' raised ValueError" in err and f"{module}.py:2" in err
