"""Output paths checked before anything is written or any model loads, atomic writes, and
write failures (a full disk, a read-only folder) turned into one sentence.

``check_output_dir`` answers "can a folder be created (or used) here?" without leaving
anything behind: the nearest existing ancestor must be a folder in which a folder can
really be made (a probe folder is made and removed at once: permission bits say nothing
to root, and ``/proc`` or a read-only mount refuse what ``os.access`` allows), and
nothing on the way may be a file. Callers create the folder only once the work that
fills it can start, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
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


def write_problem(folder: Path) -> str | None:
    """Why nothing can be created in the existing ``folder`` (the system's reason, e.g.
    "Read-only file system"), or None when a probe folder could be made and removed."""
    try:
        probe = tempfile.mkdtemp(prefix=".maspo-write-probe-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.rmdir(probe)
    return None


def check_output_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a UserError if ``what`` (e.g. "train.output_dir") cannot
    be a folder there: it is a file, lies under a file, or its nearest existing folder
    takes no new folder (``write_problem``)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a file, not a folder; choose another path")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise UserError(f"{what} {str(path)!r} cannot be created: {str(existing)!r} is a "
                        "file; choose another path")
    problem = write_problem(existing)
    if problem is not None:
        raise UserError(f"{what} {str(path)!r} cannot be written: {str(existing)!r} takes no "
                        f"new folder ({problem}); choose another path")
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
    """Replace ``path`` with ``text`` so readers see the old or the new file, never half
    (a failed write removes its temporary file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------
# Write failures during a run.

_RUST_IO_MESSAGE = re.compile(r'message: "([^"]+)"|I/O error: ([^(\n]+?)(?: \(os error|$)')


def disk_reason(err: BaseException) -> str:
    """The system's words for a failed write: ``OSError.strerror`` ("No space left on
    device", "File too large", ...), also when safetensors wraps it in its own error."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    match = _RUST_IO_MESSAGE.search(str(err))
    if match:
        return (match.group(1) or match.group(2)).strip()
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def write_errors() -> tuple[type[BaseException], ...]:
    """The exception types a failed file write raises: OSError, and safetensors' own
    error (its writer reports a full disk as ``SafetensorError``)."""
    from safetensors import SafetensorError  # (no torch)

    return OSError, SafetensorError


@contextlib.contextmanager
def writing(what: str, then: str) -> Iterator[None]:
    """A failed write inside becomes one UserError sentence: could not write ``what``
    (the system's reason); ``then`` (what the user can do)."""
    errors = write_errors()
    try:
        yield
    except errors as err:
        raise UserError(f"could not write {what} ({disk_reason(err)}); {then}") from None
