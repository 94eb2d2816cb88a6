"""maspo installed from its built wheel: a bare ``import verl`` registers every maspo loss
mode through the wheel's ``verl.plugins`` entry point (in the verl environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from integration_support import require
from wheel_support import build_wheel, install_fresh

pytestmark = [pytest.mark.integration, pytest.mark.verl]

require("verl")

CHECK = """
import json, sys, verl
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
plugin = sys.modules.get("maspo.integrations.verl")  # imported by verl, not by us
from maspo.integrations.verl import loss_mode_for
from maspo.losses import names
print(json.dumps({"plugin": plugin and plugin.__file__,
                  "missing": [n for n in names() if loss_mode_for(n) not in POLICY_LOSS_REGISTRY],
                  "modes": len(names())}))
"""


def test_a_bare_import_verl_registers_the_loss_modes_of_the_installed_wheel(tmp_path):
    bin_dir = install_fresh(build_wheel(tmp_path), tmp_path / "env")
    env = {k: v for k, v in os.environ.items() if k != "VERL_USE_EXTERNAL_PLUGINS"}
    done = subprocess.run([str(bin_dir / "python"), "-c", CHECK], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)  # not this checkout
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["plugin"] is not None, "verl did not load maspo's plugin"
    assert Path(found["plugin"]).is_relative_to(tmp_path / "env")  # the wheel's maspo
    assert found["missing"] == [] and found["modes"] > 0
