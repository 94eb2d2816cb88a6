"""A finished tiny run (two checkpoints kept) and broken copies of the tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from maspo.config import load_config
from maspo.testing import tiny_overrides
from maspo.trainer import train


@pytest.fixture(scope="session")
def finished_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A 2-step tiny run with checkpoints step-000001 and step-000002. Copy it before
    changing it (``run_copy``)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(load_config(None, tiny_overrides(tiny_model_dir, out)), progress=False)
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of the finished run, free to damage or extend."""
    return Path(shutil.copytree(finished_run, tmp_path / "run-copy"))


@pytest.fixture(scope="session")
def broken_models(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Copies of the tiny model missing or damaging one part each."""
    root = tmp_path_factory.mktemp("broken")
    models = {}
    config_only = root / "config-only"
    config_only.mkdir()
    shutil.copy(tiny_model_dir / "config.json", config_only)
    models["config-only"] = config_only

    no_tokenizer = Path(shutil.copytree(tiny_model_dir, root / "no-tokenizer"))
    (no_tokenizer / "tokenizer.json").unlink()
    models["no-tokenizer"] = no_tokenizer

    truncated = Path(shutil.copytree(tiny_model_dir, root / "truncated"))
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # a copy that stopped early
    models["truncated"] = truncated

    bad_config = Path(shutil.copytree(tiny_model_dir, root / "bad-config"))
    (bad_config / "config.json").write_text('{"model_type": "llama",')  # cut mid-file
    models["bad-config"] = bad_config
    return models
