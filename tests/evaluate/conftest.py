"""A tiny real model on disk, a trained tiny run, and small dataset files."""

from __future__ import annotations

from pathlib import Path

import pytest

from maspo.config import load_config
from maspo.testing import tiny_overrides
from maspo.trainer import train


@pytest.fixture(scope="session")
def tiny_run(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    train(load_config(None, tiny_overrides(tiny_model_dir, out)), progress=False)
    return out

