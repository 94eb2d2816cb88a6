"""Fixtures shared across the suite: a tiny real model on disk, a diverging objective, and
a Hugging Face hub cache of the suite's own that no test can reach the network from."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# huggingface_hub reads these once, when it is first imported (by transformers, below), so
# they are set first: every hub id resolves against this cache only, which hub tests fill
# with repositories they lay out themselves (maspo.testing.place_in_hub_cache).
HF_HOME = Path(tempfile.mkdtemp(prefix="maspo-tests-hf-home-"))
os.environ.update(HF_HOME=str(HF_HOME), HF_HUB_CACHE=str(HF_HOME / "hub"), HF_HUB_OFFLINE="1")
os.environ.pop("HF_TOKEN", None)
# The experiment trackers (train.report_to) keep everything in this folder, offline:
# trackio reads TRACKIO_DIR when first imported, wandb and MLflow at each run.
TRACKERS_HOME = HF_HOME / "trackers"
os.environ.update(TRACKIO_DIR=str(TRACKERS_HOME / "trackio"), WANDB_MODE="offline",
                  WANDB_DIR=str(TRACKERS_HOME / "wandb"), WANDB_SILENT="true",
                  WANDB_CONFIG_DIR=str(TRACKERS_HOME / "wandb-config"),
                  WANDB_CACHE_DIR=str(TRACKERS_HOME / "wandb-cache"),
                  WANDB_DATA_DIR=str(TRACKERS_HOME / "wandb-data"),
                  MLFLOW_TRACKING_URI=f"sqlite:///{TRACKERS_HOME / 'mlflow.db'}")
for key in ("WANDB_API_KEY", "TRACKIO_SPACE_ID", "MLFLOW_EXPERIMENT_NAME"):
    os.environ.pop(key, None)

import pytest  # noqa: E402

from maspo.losses.core import register, unregister  # noqa: E402
from maspo.testing import NoParams, nan_objective, save_tiny_model  # noqa: E402


def pytest_sessionfinish(session, exitstatus) -> None:
    shutil.rmtree(HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_cache() -> Path:
    """The suite's Hugging Face hub cache (HF_HUB_CACHE), as huggingface_hub sees it."""
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE and Path(constants.HF_HUB_CACHE) == HF_HOME / "hub"
    return HF_HOME / "hub"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def diverging_objective():
    """The name of a registered objective whose loss is always NaN (removed afterwards)."""
    register("diverges_for_tests", NoParams)(nan_objective)
    yield "diverges_for_tests"
    unregister("diverges_for_tests")
