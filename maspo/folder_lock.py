"""One writer per folder: an exclusive ``fcntl.flock`` on a lock file inside it.

``hold(lock_file, what)`` takes the lock for as long as its ``with`` block runs, or
refuses at once with a ``FolderBusy`` (a UserError: one sentence, exit code 2) naming the
folder and the process that holds it. The kernel releases a flock when its holder dies,
however it dies: a killed writer (SIGKILL included) leaves no stale lock, only perhaps the
file, which the next writer takes over. The holder writes its pid, host, command and start
time into the file for that message; a clean exit deletes the file, and the folders the
lock had to create are removed again when nothing else was written into them.

Within one process the lock is re-entrant (the trainer holds its run folder and so does a
comparison around it), and the file is opened close-on-exec, so child processes never
inherit it. ``holder(lock_file)`` says who writes a folder now, without taking the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from maspo.errors import UserError

RETRIES = 5  # a reader's momentary shared lock (``holder``) is waited out: 0.1 s in all
RETRY_WAIT_S = 0.02

_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


class FolderBusy(UserError):
    """Another process writes the folder."""


def busy(what: str, folder: Path, holder: str) -> FolderBusy:
    """The refusal: ``what`` (e.g. "the run folder") ``folder`` is written by ``holder``."""
    return FolderBusy(f"{what} {str(folder)!r} is being written by {holder}; wait for it to "
                      "finish, or stop it and run the command again")


def _command() -> str:
    """How this process was started, as a user would type it."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("maspo", "__main__.py"):
        argv[0] = "maspo"
    return shlex.join(argv)


def _describe(record: dict) -> str:
    """"process 123 on host h (maspo train ..., since 14:02:11 UTC)"."""
    where = f"process {record.get('pid', '?')} on host {record.get('host', '?')}"
    details = [d for d in (record.get("command"), record.get("since") and
                           f"since {record['since']}") if d]
    return where + (f" ({', '.join(details)})" if details else "")


def _read_record(lock_file: Path) -> dict | None:
    try:
        record = json.loads(lock_file.read_text() or "null")
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def holder(lock_file: Path) -> str | None:
    """Who holds ``lock_file`` now ("process 123 on host h (...)"), or None when no live
    process does (no file, or one a killed writer left behind)."""
    lock_file = Path(lock_file)
    if lock_file.resolve() in _held:
        return None  # this very process
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(_read_record(lock_file) or {})
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _acquire(lock_file: Path, what: str) -> int:
    """The open, locked lock file's descriptor, or FolderBusy."""
    for attempt in range(RETRIES):
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if attempt < RETRIES - 1:  # a reader's probe passes; a writer stays
                time.sleep(RETRY_WAIT_S)
                continue
            raise busy(what, lock_file.parent,
                       _describe(_read_record(lock_file) or {})) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder deleted the file as we opened it: take the new one
    raise FolderBusy(f"{what} {str(lock_file.parent)!r} is being taken and released by "
                     "other processes over and over; try again")


@contextlib.contextmanager
def hold(lock_file: str | Path, what: str = "the folder",
         command: str | None = None) -> Iterator[None]:
    """Hold ``lock_file`` (its folder created if need be) for the block; ``what`` names
    the folder in the refusal (e.g. "the run folder"), ``command`` what the holder runs
    (default: this process's command line)."""
    lock_file = Path(lock_file)
    key = lock_file.resolve()  # one identity however the folder is named
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    folder = lock_file.parent
    created = [p for p in (folder, *folder.absolute().parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _acquire(lock_file, what)
    except OSError as err:
        _remove_empty(created)
        raise UserError(f"cannot lock {what} {str(folder)!r} for writing "
                        f"({err.strerror or type(err).__name__}); make it writable or "
                        "choose another folder") from None
    except BaseException:
        _remove_empty(created)
        raise
    _held[key] = 1
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": command or _command(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        with contextlib.suppress(OSError):  # (the lock holds without its description)
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(record) + "\n").encode())
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            lock_file.unlink()  # while still held: a waiting opener then sees a new file
        os.close(fd)  # releases the lock
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first) that are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
