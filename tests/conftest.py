"""Fixtures shared across the suite: a tiny real model on disk, a diverging objective."""

from __future__ import annotations

from pathlib import Path

import pytest

from maspo.losses.core import register, unregister
from maspo.testing import NoParams, nan_objective, save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def diverging_objective():
    """The name of a registered objective whose loss is always NaN (removed afterwards)."""
    register("diverges_for_tests", NoParams)(nan_objective)
    yield "diverges_for_tests"
    unregister("diverges_for_tests")
