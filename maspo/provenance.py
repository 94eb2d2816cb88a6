"""Which code a result came from: the git commit of the maspo source tree."""

from __future__ import annotations

import subprocess
from pathlib import Path


def maspo_commit() -> str | None:
    """The git commit of the maspo source tree (``+dirty`` with uncommitted changes to
    it), or None where maspo is not a tracked part of a git checkout (an installed wheel,
    even one inside another project's repository: that commit says nothing of maspo)."""
    here = Path(__file__).resolve()

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here.parent, capture_output=True,
                              text=True, check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "--", here.name)  # fails unless tracked here
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if changed else "")
