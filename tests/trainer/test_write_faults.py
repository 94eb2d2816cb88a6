"""Faults a long run meets, produced for real: a disk that fills while a checkpoint or the
final model is written, a run folder that takes no writes at resume. Each ends in one
sentence and exit code 2 with the previous checkpoint intact, and ``--resume`` then ends
bit-identical to a run that never met the fault.

A full disk is a small tmpfs where this process may mount one (as root with
CAP_SYS_ADMIN), else a file size limit (RLIMIT_FSIZE, set on the running trainer with
prlimit: a write past it fails with EFBIG, "File too large"; Python ignores SIGXFSZ). A
read-only run folder is a tmpfs remounted read-only, else a folder without write
permission, which binds root too once the child drops CAP_DAC_OVERRIDE.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from maspo.checkpoint import checkpoint_problem
from maspo.run import RunDir
from maspo.testing import tiny_overrides

STEPS = 4
TIMEOUT_S = 180
FAULT_MARGIN = 64 * 1024  # bytes left free: a step's log lines fit, a checkpoint does not
FILE_SIZE_LIMIT = 64 * 1024  # below the tiny model's weights file (~89 KB), above its logs
TMPFS_SIZE = "64m"
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1  # <linux/prctl.h>, <linux/capability.h>


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True)
    except FileNotFoundError:  # no mount command
        return False
    return done.returncode == 0


def _can_mount() -> bool:
    probe = Path(tempfile.mkdtemp(prefix="maspo-mount-probe-"))
    mounted = _mount_tmpfs(probe, "size=1m")
    if mounted:
        subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return mounted


CAN_MOUNT = _can_mount()


@contextmanager
def _tmpfs(folder: Path):
    """A roomy tmpfs at ``folder`` (None where none can be mounted)."""
    if not (CAN_MOUNT and _mount_tmpfs(folder, f"size={TMPFS_SIZE}")):
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _command(model_dir, out, *extra) -> list[str]:
    overrides = tiny_overrides(model_dir, out, **{"train.steps": STEPS})
    return [sys.executable, "-m", "maspo", "train", "--no-progress", *overrides, *extra]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONHASHSEED="0")


def _drop_dac_override() -> None:
    """(in the child, before exec) root without CAP_DAC_OVERRIDE obeys permission bits."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory) -> Path:
    """The run every faulted run must end up identical to."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(_command(tiny_model_dir, out), check=True, env=_env(), capture_output=True)
    return out


def _weights(run: Path) -> list[dict[str, torch.Tensor]]:
    return [load_file(run / "checkpoints" / f"step-{STEPS:06d}" / "weights.safetensors"),
            load_file(run / "final_model" / "model.safetensors")]


def _assert_identical(run: Path, reference: Path) -> None:
    for ours, theirs in zip(_weights(run), _weights(reference), strict=True):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text()
             .splitlines()]
    assert steps == list(range(STEPS + 1))  # every step logged exactly once


def _error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("maspo:")]
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


def _fill(folder: Path, leave: int) -> Path:
    """A file that leaves ``leave`` bytes free on ``folder``'s filesystem."""
    stats = os.statvfs(folder)
    filler = folder / "filler.bin"
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(stats.f_bavail * stats.f_frsize - leave, 0))
    return filler


def _run_into_fault(model_dir, run: Path, fault) -> subprocess.CompletedProcess:
    """Start the run, stop it once its first checkpoint is complete, apply ``fault(pid)``,
    and let it run on into it."""
    proc = subprocess.Popen(_command(model_dir, run), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT_S
    while not (run / "checkpoints" / "latest").is_file():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.005)
    proc.send_signal(signal.SIGSTOP)
    try:
        fault(proc.pid)
    finally:
        proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("kind", ["filesystem full", "file size limit"])
def test_a_disk_that_fills_during_a_checkpoint_then_resume_matches_an_uninterrupted_run(
        kind, tiny_model_dir, uninterrupted, tmp_path):
    with _tmpfs(tmp_path / "disk") as disk:
        run = (disk or tmp_path) / "run"
        filler = None

        def fault(pid: int) -> None:
            nonlocal filler
            if kind == "filesystem full" and disk is not None:
                filler = _fill(disk, FAULT_MARGIN)
            else:  # (also where no tmpfs can be mounted)
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT,) * 2)

        line = _run_into_fault(tiny_model_dir, run, fault)
        said = _error_line(line)
        checkpoints = run / "checkpoints"
        intact = (checkpoints / "latest").read_text().strip()
        reason = "No space left on device" if filler is not None else "File too large"
        failed = int(intact.removeprefix("step-")) + 1
        assert said == (
            f"maspo: error: could not write checkpoint step-{failed:06d} in "
            f"{str(checkpoints)!r} ({reason}); checkpoint {intact} is intact: free some space "
            "(or make the folder writable), then continue with --resume")
        assert not list(checkpoints.glob("*.tmp"))  # the half-written one is gone
        assert checkpoint_problem(checkpoints / intact) is None

        if filler is not None:
            filler.unlink()  # room again
        (checkpoints / "step-000009.tmp").mkdir()  # as a kill mid-save leaves one: cleaned
        resumed = subprocess.run(_command(tiny_model_dir, run, "--resume"), env=_env(),
                                 capture_output=True, text=True, timeout=TIMEOUT_S)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert not list(checkpoints.glob("*.tmp"))
        _assert_identical(run, uninterrupted)


def test_a_disk_that_fills_during_the_final_model_write_then_resume_finishes_it(
        tiny_model_dir, uninterrupted, tmp_path):
    """A run stopped after its last checkpoint, mid-way through its final model (as a kill
    leaves it), resumed on a disk with no room for the model: a sentence, no half model;
    resumed with room: the same final model as the uninterrupted run."""
    run = Path(shutil.copytree(uninterrupted, tmp_path / "run"))
    folder = RunDir(run)
    for done in (folder.summary, folder.curves):
        done.unlink()
    shutil.rmtree(folder.final_model)
    folder.final_model_partial.mkdir()
    (folder.final_model_partial / "model.safetensors").write_bytes(b"\0" * 100)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT,) * 2)

    full = subprocess.run(_command(tiny_model_dir, run, "--resume"), env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S,
                          preexec_fn=limited)
    assert _error_line(full) == (
        f"maspo: error: could not write the final model in {str(folder.final_model)!r} (File "
        f"too large); checkpoint step-{STEPS:06d} is intact: free some space, then finish the "
        "run with --resume")
    assert not folder.final_model.exists() and not folder.final_model_partial.exists()
    assert folder.status() == "resumable"

    resumed = subprocess.run(_command(tiny_model_dir, run, "--resume"), env=_env(),
                             capture_output=True, text=True, timeout=TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert folder.status() == "done"
    _assert_identical(run, uninterrupted)


@contextmanager
def _read_only(folder: Path, kind: str):
    """``folder`` (which lies on a tmpfs for "read-only mount") made read-only; yields the
    preexec function a child that must obey it runs with."""
    if kind == "read-only mount" and os.path.ismount(folder.parent):
        subprocess.run(["mount", "-o", "remount,ro", str(folder.parent)], check=True)
        try:
            yield None
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(folder.parent)], check=True)
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    for path in modes:
        path.chmod(modes[path] & ~0o222)
    try:
        yield _drop_dac_override
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("kind", ["read-only mount", "no write permission"])
def test_resuming_a_run_folder_that_takes_no_writes_is_one_sentence(
        kind, tiny_model_dir, uninterrupted, tmp_path):
    with _tmpfs(tmp_path / "disk") as disk:
        run = Path(shutil.copytree(uninterrupted, (disk or tmp_path) / "run"))
        before = _snapshot(run)
        with _read_only(run, kind) as preexec:
            done = subprocess.run(_command(tiny_model_dir, run, "--resume", "train.steps=5"),
                                  env=_env(), capture_output=True, text=True,
                                  timeout=TIMEOUT_S, preexec_fn=preexec)
        reason = "Read-only file system" if preexec is None else "Permission denied"
        assert _error_line(done) == (
            f"maspo: error: cannot resume the run in {str(run)!r}: {str(run)!r} is not "
            f"writable ({reason}); make it writable, or copy the run elsewhere and resume it "
            "there")
        assert _snapshot(run) == before
