"""Which code a result came from: the git commit of the maspo source tree."""

from __future__ import annotations

import subprocess
from pathlib import Path


def maspo_commit() -> str | None:
    """The git commit of the maspo source tree (``+dirty`` with uncommitted changes to
    it), or None outside a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=here,
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if changed else "")
