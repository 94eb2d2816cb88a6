"""Output paths checked before anything is written or any model loads, and atomic writes.

``check_output_dir`` answers "can a folder be created (or used) here?" without creating
it: the nearest existing ancestor must be a writable folder, and nothing on the way may
be a file. Callers create the folder only once the work that fills it can start, so a
failed start leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from maspo.errors import UserError

# what `maspo eval` writes into its --out folder (which must hold none of them yet)
EVAL_FILES = {"json": "eval.json", "csv": "eval.csv", "markdown": "eval.md",
              "samples": "samples.jsonl"}


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a UserError if ``what`` (e.g. "train.output_dir") cannot
    be a folder there: it is a file, lies under a file, or its parent is not writable."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a file, not a folder; choose another path")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"{what} {str(path)!r} cannot be created: {str(existing)!r} is a "
                        "file; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what} {str(path)!r} cannot be written: {str(existing)!r} is not "
                        "writable; choose another path")
    return path


def check_output_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a UserError if a file cannot be written there (it is a folder,
    or its folder cannot be created)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a folder; give a file path")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise UserError(f"{what} {str(path)!r} cannot be created: {str(existing)!r} is a "
                        "file; choose another path")
    check_output_dir(path.parent, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {str(path)!r} cannot be overwritten (read-only); choose "
                        "another path")
    return path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
