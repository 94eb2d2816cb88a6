"""Base-config overrides that train the tiny model (tests/conftest.py) in about a second."""

from __future__ import annotations

import pytest

from maspo.testing import tiny_overrides


@pytest.fixture(scope="session")
def tiny_base(tiny_model_dir) -> list[str]:
    """Base-config overrides for a comparison on the tiny model (held-out eval every step)."""
    return tiny_overrides(tiny_model_dir, **{"train.eval_every": 1})
