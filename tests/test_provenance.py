"""The commit a result records is maspo's own: None for a copy of maspo that git does not
track, even inside another repository (a wheel installed into a project's .venv)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import maspo.provenance
from maspo.provenance import maspo_commit


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def _copy_in(repo: Path):
    """maspo/provenance.py copied into ``repo``/site/maspo/, loaded from there."""
    target = repo / "site" / "maspo" / "provenance.py"
    target.parent.mkdir(parents=True)
    shutil.copy(maspo.provenance.__file__, target)
    spec = importlib.util.spec_from_file_location("copied_provenance", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_untracked_copy_inside_another_repository_records_no_commit(tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README").write_text("someone else's project\n")
    _git(repo, "add", "README")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    copied = _copy_in(repo)
    assert copied.maspo_commit() is None  # the project's commit is not maspo's

    _git(repo, "add", "site")  # tracked now: the checkout's commit is the code's
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "maspo")
    assert copied.maspo_commit() == _git(repo, "rev-parse", "HEAD")
    (repo / "site" / "maspo" / "extra.py").write_text("x = 1\n")
    assert copied.maspo_commit() == _git(repo, "rev-parse", "HEAD") + "+dirty"


def test_this_checkout_records_its_head():
    commit = maspo_commit()
    here = Path(maspo.provenance.__file__).parent
    try:
        head = _git(here, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:  # maspo installed from a wheel: nothing to record
        assert commit is None
        return
    assert commit is not None and commit.removesuffix("+dirty") == head
