"""The built wheel carries what an installed maspo needs: presets load by name, the console
script runs, and the verl plugin entry point is declared (tests/integrations/
test_verl_wheel.py checks that verl then finds it)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from wheel_support import build_wheel, install_fresh

from maspo.config import preset_names

CHECK = """
import importlib.metadata as md, json, maspo, maspo.config
print(json.dumps({"maspo": maspo.__file__, "dist": str(md.distribution("maspo")._path),
                  "presets": maspo.config.preset_names(),
                  "plugins": [e.value for e in md.entry_points(group="verl.plugins")
                              if e.name == "maspo"]}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    return wheel, install_fresh(wheel, work / "env")


def test_the_wheel_holds_the_presets_and_the_verl_entry_point(installed) -> None:
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        declared = archive.read(entry_points).decode()
    assert {f"maspo/presets/{name}.yaml" for name in preset_names()} <= set(names)
    assert "[verl.plugins]\nmaspo = maspo.integrations.verl_plugin" in declared
    assert "[console_scripts]\nmaspo = maspo.cli:main" in declared


def test_an_installed_wheel_loads_a_preset_by_name(installed) -> None:
    _, bin_dir = installed
    env = bin_dir.parent
    found = json.loads(subprocess.run([str(bin_dir / "python"), "-c", CHECK], check=True,
                                      capture_output=True, text=True, cwd=env).stdout)
    assert Path(found["maspo"]).is_relative_to(env)  # the wheel's maspo, not this checkout
    assert Path(found["dist"]).is_relative_to(env)
    assert found["presets"] == preset_names() and "grpo" in found["presets"]
    assert found["plugins"] == ["maspo.integrations.verl_plugin"]

    shown = subprocess.run([str(bin_dir / "maspo"), "config", "--config", "grpo",
                            "rollout.group_size=8"], capture_output=True, text=True, cwd=env)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "  name: grpo\n" in shown.stdout and "  group_size: 8\n" in shown.stdout
