"""Shared by the integration tests, which run on the real verl / TRL packages.

Install them with ``pip install -e ".[verl,trl]"``. Each test module is marked
``integration``. Where an engine is not installed its tests are skipped, unless
MASPO_REQUIRE_INTEGRATIONS=1 (for CI), which turns the skip into a failure so a missing
install step cannot pass unnoticed.
"""

from __future__ import annotations

import importlib
import os

import pytest


def require(module: str):
    """Import ``module`` or skip (fail under MASPO_REQUIRE_INTEGRATIONS=1)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if os.environ.get("MASPO_REQUIRE_INTEGRATIONS") == "1":
            pytest.fail(f"{module} is required (MASPO_REQUIRE_INTEGRATIONS=1) but failed to "
                        f"import: {err}", pytrace=False)
        pytest.skip(f"{module} is not installed (pip install -e '.[verl,trl]'): {err}",
                    allow_module_level=True)
