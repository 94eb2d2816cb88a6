"""One writer per run or study folder, and what an interrupted run says, with real
processes: a training run in a subprocess, a second writer refused (this test's own
process), SIGKILL leaving no stale lock, SIGINT / SIGTERM naming the checkpoint to resume."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from maspo.cli import main
from maspo.errors import UserError
from maspo.folder_lock import FolderBusy
from maspo.run import LOCK_FILE, RunDir, hold_folder
from maspo.testing import tiny_overrides

LONG = 20  # steps of a run that is still training while the test acts on it
TIMEOUT_S = 900  # generous: the suite may share a loaded machine


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    """``maspo ARGV`` in a new process, its output in ``log``; Ctrl-C reaches it even when
    the test suite itself runs with SIGINT ignored (a background job)."""
    return subprocess.Popen([sys.executable, "-m", "maspo", *argv], stdout=log.open("w"),
                            stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert proc.poll() is None, f"the process ended early: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the process made no progress"
        time.sleep(0.05)


def _steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    steps = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:  # a line being written right now
            pass
    return steps


def _holder_pid(folder: Path) -> int | None:
    try:
        return json.loads((folder / LOCK_FILE).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _train_argv(model_dir, out, **extra) -> list[str]:
    return ["train", "--no-progress", *tiny_overrides(model_dir, out, **{
        "train.steps": LONG, "train.save_every": 1, **extra})]


def test_the_lock_is_reentrant_and_leaves_no_file_nor_folder_it_created(tmp_path):
    folder = tmp_path / "a" / "b"
    with hold_folder(folder, "the run folder"):
        record = json.loads((folder / LOCK_FILE).read_text())
        assert record["command"] and record["host"] and record["since"]
        assert RunDir(folder).writer() is None  # (this process is no other writer)
        with hold_folder(tmp_path / "a" / ".." / "a" / "b", "the run folder"):  # nested
            assert (folder / LOCK_FILE).is_file()
        assert (folder / LOCK_FILE).is_file()  # still held by the outer block
    assert not (tmp_path / "a").exists()  # it wrote nothing there: gone again


def test_a_holder_in_another_process_is_named_and_an_unlockable_folder_refused(
        tmp_path):
    folder = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from maspo.run import hold_folder\n"
        f"with hold_folder({str(folder)!r}, 'x', 'maspo compare --out study'):\n"
        "    print('held', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match=(
                rf"^the comparison folder '{folder}' is being written by process "
                rf"{holder.pid} on host .+ \(maspo compare --out study, since .+ UTC\); "
                "wait for it to finish")):
            with hold_folder(folder, "the comparison folder"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold_folder(folder, "the comparison folder"):  # killed: the lock went with it
        pass
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="cannot lock the run folder .* for writing"):
        with hold_folder(tmp_path / "a-file" / "run", "the run folder"):
            pass


def test_a_second_writer_is_refused_and_the_first_run_finishes_as_if_alone(
        tiny_model_dir, tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "first.log"
    first = _start(_train_argv(tiny_model_dir, out), log)
    _wait_for(lambda: 1 in _steps(out), first, log)
    assert _holder_pid(out) == first.pid
    for extra in (["--resume"], []):  # resumed or started anew into the same folder
        assert main(_train_argv(tiny_model_dir, out) + extra) == 2
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1, captured.err
        assert (f"the run folder {str(out)!r} is being written by process {first.pid}"
                in captured.err and "maspo train" in captured.err)
        assert "maspo: training" not in captured.out  # refused before its model loaded
    assert first.poll() is None  # refused while the first was training
    assert first.wait(TIMEOUT_S) == 0, log.read_text()[-2000:]
    assert _steps(out) == list(range(LONG + 1))  # every step once, from one writer
    assert not (out / LOCK_FILE).exists()


def test_a_killed_writer_leaves_no_stale_lock(tiny_model_dir, tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "killed.log"
    killed = _start(_train_argv(tiny_model_dir, out), log)
    _wait_for(lambda: 2 in _steps(out), killed, log)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _holder_pid(out) == killed.pid  # its file is still there, its lock is not
    assert RunDir(out).writer() is None
    assert main(["train", "--resume", "--no-progress", f"train.output_dir={out}",
                 "train.steps=4"]) == 0
    assert "resuming from step-00000" in capsys.readouterr().out
    assert _steps(out) == [0, 1, 2, 3, 4] and not (out / LOCK_FILE).exists()


def test_eval_of_a_run_still_training_says_so_and_reads_a_saved_checkpoint(
        tiny_model_dir, tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "training.log"
    training = _start(_train_argv(tiny_model_dir, out), log)
    try:
        _wait_for(lambda: (out / "checkpoints" / "latest").is_file(), training, log)
        assert main(["eval", str(out), "--n", "1", "--no-progress",
                     "--out", str(tmp_path / "eval")]) == 0
        err = capsys.readouterr().err
        assert f"run {str(out)!r} is still training (process {training.pid}" in err
        assert "evaluating step-0000" in err and "the newest checkpoint it has saved" in err
    finally:
        training.kill()
        training.wait()


@pytest.mark.parametrize("sig, save_every, code, said", [
    (signal.SIGINT, 2, 130, "maspo: interrupted after checkpoint"),
    (signal.SIGTERM, 2, 143, "maspo: terminated (SIGTERM) after checkpoint"),
    (signal.SIGTERM, 0, 143, "saved a checkpoint: none exists"),
])
def test_an_interrupted_run_names_the_checkpoint_resume_continues_from(
        tiny_model_dir, tmp_path, sig, save_every, code, said):
    out, log = tmp_path / "run", tmp_path / "run.log"
    proc = _start(_train_argv(tiny_model_dir, out, **{"train.save_every": save_every}), log)
    _wait_for(lambda: 3 in _steps(out), proc, log)
    proc.send_signal(sig)
    assert proc.wait(TIMEOUT_S) == code
    lines = [line for line in log.read_text().splitlines() if line.startswith("maspo: ")]
    message = lines[-1]
    assert said in message and "Traceback" not in log.read_text()
    assert f"maspo train --resume train.output_dir={out}" in message
    latest = out / "checkpoints" / "latest"
    if save_every:
        assert f"checkpoint {latest.read_text().strip()} " in message
    else:
        assert not latest.exists() and "starts it over" in message
    assert not (out / LOCK_FILE).exists()


def test_a_second_comparison_into_one_folder_is_refused(tiny_model_dir, tmp_path, capsys):
    """The first runs its runs in child processes (--jobs 2): the study's lock and each
    run's lock do not block each other, and it finishes."""
    out, log = tmp_path / "study", tmp_path / "study.log"
    argv = ["compare", "--objectives", "grpo,maspo", "--seeds", "0", "--out", str(out),
            "--n", "1", "--no-progress", *tiny_overrides(tiny_model_dir)]
    first = _start([*argv, "--jobs", "2"], log)
    _wait_for(lambda: _holder_pid(out) == first.pid, first, log)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"the comparison folder {str(out)!r} is being written by process {first.pid}" in err
    assert first.wait(TIMEOUT_S) == 0, log.read_text()[-2000:]
    assert (out / "results.md").is_file() and not list(out.rglob(LOCK_FILE))


def test_a_second_probe_into_one_folder_is_refused(tiny_model_dir, tmp_path, capsys):
    out, log = tmp_path / "probes", tmp_path / "probe.log"
    argv = ["probe", "--objectives", "grpo,maspo", "--seeds", "0", "--entropy-steps", "1",
            "--out", str(out), *tiny_overrides(tiny_model_dir)]
    first = _start(argv, log)
    _wait_for(lambda: _holder_pid(out) == first.pid, first, log)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"the probe folder {str(out)!r} is being written by process {first.pid}" in err
    assert "(maspo probe --objectives grpo,maspo" in err
    assert first.wait(TIMEOUT_S) == 0, log.read_text()[-2000:]
    assert (out / "probes.md").is_file() and not (out / LOCK_FILE).exists()


def _hold_elsewhere(run: Path, log: Path) -> subprocess.Popen:
    """Another process that holds the run's writer lock (as a trainer does), until killed."""
    code = ("import sys, time\nfrom maspo.run import hold_folder\n"
            "with hold_folder(sys.argv[1], 'the run folder'):\n"
            "    print('held', flush=True); time.sleep(600)\n")
    writer = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    _wait_for(lambda: "held" in log.read_text(), writer, log)
    return writer


def _open_files_under(folder: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    targets = [os.readlink(fd) for fd in fds.iterdir() if fd.is_symlink()]
    return [t for t in targets if t.startswith(str(folder))]


def test_eval_of_a_run_still_training_holds_its_checkpoint_while_the_run_prunes_it(
        tiny_model_dir, tmp_path):
    """The trainer deletes its oldest checkpoint after saving a new one: the checkpoint eval
    chose may vanish before its weights are loaded. Eval holds the file it chose, so the
    weights it scores are exactly that checkpoint's."""
    from safetensors.torch import load_file

    from maspo.checkpoint import WEIGHTS_FILE
    from maspo.eval_specs import load_eval_model, locate_model

    out, log = tmp_path / "run", tmp_path / "run.log"
    assert main(["train", "--no-progress", *tiny_overrides(tiny_model_dir, out, **{
        "train.steps": 2, "train.save_every": 1})]) == 0
    checkpoint = RunDir(out).latest_checkpoint()
    saved = load_file(checkpoint / WEIGHTS_FILE)
    writer = _hold_elsewhere(out, log)
    try:
        source = locate_model(str(out))
        assert source.checkpoint == checkpoint
        for step_dir in (out / "checkpoints").glob("step-*"):  # the run prunes them all
            shutil.rmtree(step_dir)
        model, _ = load_eval_model(source)
    finally:
        writer.kill()
        writer.wait()
    params = dict(model.named_parameters())
    assert saved and all(torch.equal(params[name], value) for name, value in saved.items())
    base = dict(load_eval_model(str(tiny_model_dir))[0].named_parameters())
    assert any(not torch.equal(base[name], value) for name, value in saved.items())


def test_an_eval_refused_after_choosing_a_checkpoint_leaves_no_file_open(tiny_model_dir,
                                                                        tmp_path, capsys):
    out, log = tmp_path / "run", tmp_path / "run.log"
    assert main(["train", "--no-progress", *tiny_overrides(tiny_model_dir, out, **{
        "train.steps": 1})]) == 0
    writer = _hold_elsewhere(out, log)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["eval", str(out), "--data", str(tmp_path / "missing.jsonl"),
                         "--out", str(tmp_path / "eval")]) == 2
            gc.collect()  # a file left open would be closed here, with a ResourceWarning
    finally:
        writer.kill()
        writer.wait()
    assert "missing.jsonl" in capsys.readouterr().err
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    assert _open_files_under(out) == []
