"""The run folder: every file of a run, read and written here alone, and the resume rules.

    <run>/
      config.yaml       the config the run trains with (written once its model has loaded)
      metrics.jsonl     one record per step; step 0 is the held-out evaluation before training
      samples.jsonl     completions saved at each step (``train.samples_per_step``)
      tensorboard/      the numeric metrics again, for TensorBoard (``train.report_to``)
      wandb/            wandb's own files of the run, when it reports to wandb
      trackers.json     the run's id in each tracker that reopens a run by id (resume)
      checkpoints/      ``step-NNNNNN/`` folders and a ``latest`` pointer (``maspo.checkpoint``)
      summary.json      written when training finishes
      curves.png        the run's training curves
      final_model/      the trained model as an HF folder, with a checksum manifest
                        (written as final_model.tmp/ and renamed into place)
      final_eval.json   the final held-out evaluation, per problem its verdicts, answers
                        and completions: the trainer's last one, or ``maspo compare``'s
                        when it asks for other settings
      stopped.txt       ``maspo compare``: why the trainer stopped the run (delete to retry)
      writer.lock       while a process writes the run: its lock (``maspo.folder_lock``),
                        holding its pid, host and command; deleted when it is done

A study folder (``maspo compare --out``, ``maspo probe --out``) has a writer.lock of its own.

A run is *new* (no config.yaml), *resumable* (a config, not finished), *done*
(summary.json) or *stopped* (stopped.txt). Resuming takes the saved config; only
``RESUMABLE_KEYS`` may change, and its hub ids keep the commits it started with
(``pin_config``). On resume the JSONL files are cut back to the checkpoint's
step, so every step is logged exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from maspo.config import (
    Config,
    apply_overrides,
    config_from_saved,
    load_config,
    to_dict,
    validate,
    with_defaults,
)
from maspo.config_build import changes
from maspo.errors import UserError
from maspo.folder_lock import busy, hold, holder
from maspo.hub import DATASET, MODEL, PINNED_KEYS, keeps_pin, pin
from maspo.paths import check_output_dir, write_atomic, write_errors, write_problem, writing
from maspo.trackers import DEFAULT_PROJECT, Destination, RunLabel, Trackers

LOCK_FILE = "writer.lock"  # in a run or study folder while a process writes it

RESUMABLE_KEYS = ("train.steps", "train.save_every", "train.keep_checkpoints",
                  "train.threads", "train.output_dir", "train.report_to")
"""Keys a resume may change: none of them alters the updates already made or to come."""

Records = list[dict[str, Any]]  # a JSONL file's records (metrics.jsonl, samples.jsonl)


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports (summary.json; ``maspo.trainer.train`` returns it)."""

    objective: str  # loss.name
    steps: int  # train.steps
    eval_accuracy_before: float | None  # held-out accuracy at step 0 (None: not measured)
    eval_accuracy_after: float | None  # held-out accuracy after the last step
    eval_prompts: int  # held-out prompts
    eval_samples_per_prompt: int  # train.eval_samples
    skipped_updates: int  # non-finite updates skipped
    train_time_s: float  # the steps' and evaluations' time, summed over the run's records
    run_dir: str  # the run folder
    train_cpu_s: float = 0.0  # the process CPU time of the steps and evaluations (0: older run)
    maspo_commit: str | None = None  # the code that finished the run (None: not a checkout)

    @classmethod
    def from_json(cls, text: str) -> RunSummary:
        saved = json.loads(text)
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls)
                      if f.name in saved})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"


# ---------------------------------------------------------------------------------------
# JSON Lines: one record a line, appended as a run goes, cut back on resume.


def read_jsonl(path: Path) -> Records:
    """The records of a JSONL file ([] if it does not exist); a bad line is a UserError."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise UserError(f"line {number} of {str(path)!r} is not valid JSON") from None
    return records


def append_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(record) + "\n" for record in records))


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep only the records of ``path`` whose ``step`` is <= ``step`` (on resume); a last
    line cut short (a full disk, a kill mid-write) goes too."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines and not _is_json(lines[-1]):
            lines.pop()
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        write_atomic(path, "".join(line + "\n" for line in kept))


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# The folder.


@dataclass(frozen=True)
class RunDir:
    """One run's folder; its attributes are the paths of the files listed above."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / "config.yaml")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    samples = property(lambda self: self.root / "samples.jsonl")
    tensorboard = property(lambda self: self.root / "tensorboard")
    trackers = property(lambda self: self.root / "trackers.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    summary = property(lambda self: self.root / "summary.json")
    curves = property(lambda self: self.root / "curves.png")
    final_model = property(lambda self: self.root / "final_model")
    final_model_partial = property(lambda self: self.root / "final_model.tmp")
    final_eval = property(lambda self: self.root / "final_eval.json")
    stopped = property(lambda self: self.root / "stopped.txt")
    lock = property(lambda self: self.root / LOCK_FILE)

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunDir:
        """The run a ``<run>/checkpoints/step-N`` folder belongs to."""
        return cls(Path(checkpoint).parent.parent)

    # -- state ---------------------------------------------------------------------------

    def status(self) -> str:
        """"stopped", "done", "resumable" (started, not finished) or "new"."""
        if self.stopped.is_file():
            return "stopped"
        if self.summary.is_file():
            return "done"
        return "resumable" if self.config.is_file() else "new"

    def holds_training(self) -> bool:
        """Whether training has logged or saved anything here (a config alone is a start
        that failed before its first step)."""
        return self.metrics.exists() or self.checkpoints.exists()

    def latest_checkpoint(self, note=None) -> Path | None:
        """The newest intact checkpoint (``maspo.checkpoint.latest_checkpoint``)."""
        from maspo.checkpoint import latest_checkpoint  # (torch: imported only when needed)

        return latest_checkpoint(self.checkpoints, note)

    def has_final_model(self) -> bool:
        return (self.final_model / "config.json").is_file()

    def writer(self) -> str | None:
        """The other process writing this run now ("process 123 on host h (...)"), or None."""
        return holder(self.lock)

    # -- config ----------------------------------------------------------------------------

    def read_config(self) -> Config:
        """The config the run trained with, validated."""
        if not self.config.is_file():
            raise UserError(f"{str(self.root)!r} is not a run directory (no config.yaml)")
        return load_config(self.config)

    def config_dict(self) -> dict[str, Any]:
        """The saved config as plain YAML data ({} if there is none), for labels."""
        if not self.config.is_file():
            return {}
        return yaml.safe_load(self.config.read_text()) or {}

    def write_config(self, config: Config) -> None:
        """Create the folder and write the config the run trains with; a failed write
        leaves no folder it created behind."""
        created = [] if self.root.exists() else [self.root]
        created += [p for p in self.root.parents if not p.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            write_atomic(self.config, yaml.safe_dump(to_dict(config), sort_keys=False))
        except BaseException:
            for folder in created:  # innermost first; only if still empty
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    # -- records ---------------------------------------------------------------------------

    def read_metrics(self) -> Records:
        if not self.metrics.is_file():
            raise UserError(f"{str(self.root)!r} is not a run directory (no metrics.jsonl)")
        return read_jsonl(self.metrics)

    def read_samples(self) -> Records:
        """The saved completions, [] if the run saved none."""
        return read_jsonl(self.samples)

    def read_summary(self) -> RunSummary:
        return RunSummary.from_json(self.summary.read_text())

    def write_summary(self, summary: RunSummary) -> None:
        write_atomic(self.summary, summary.to_json())

    def read_final_eval(self, settings: dict[str, Any]) -> dict[str, Any] | None:
        """The cached final evaluation if it was made with ``settings``, else None."""
        from maspo.evaluate import same_settings

        if not self.final_eval.is_file():
            return None
        saved = json.loads(self.final_eval.read_text())
        return saved if same_settings(saved.get("settings", {}), settings) else None

    def write_final_model(self, model, tokenizer) -> dict[str, dict[str, Any]]:
        """The trained model and tokenizer as an HF folder sealed with checksums (altered
        bytes are named when it is loaded), written beside its place and renamed into it:
        a failed write leaves no half model. Returns the manifest's entries (file name ->
        bytes and sha256)."""
        from maspo.model_files import seal_model_dir

        partial = self.final_model_partial
        shutil.rmtree(partial, ignore_errors=True)
        try:
            model.save_pretrained(partial, safe_serialization=True)
            tokenizer.save_pretrained(partial)
            files = seal_model_dir(partial)
            if self.final_model.exists():  # a finished run resumed to write it again
                shutil.rmtree(self.final_model)
            os.replace(partial, self.final_model)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return files

    def write_final_eval(self, record: dict[str, Any]) -> None:
        write_atomic(self.final_eval, json.dumps(record) + "\n")

    def read_tracker_ids(self) -> dict[str, str]:
        """tracker -> the run's id there ({} if none was saved)."""
        return json.loads(self.trackers.read_text()) if self.trackers.is_file() else {}

    def write_tracker_ids(self, ids: dict[str, str]) -> None:
        if ids or self.trackers.exists():
            write_atomic(self.trackers, json.dumps(ids) + "\n")

    def stopped_reason(self) -> str | None:
        return self.stopped.read_text().strip() if self.stopped.is_file() else None

    def write_stopped(self, reason: str) -> None:
        write_atomic(self.stopped, f"{reason}\n")


def hold_folder(folder: str | Path, what: str, command: str | None = None):
    """Context manager: this process is ``folder``'s one writer for the block, or a
    ``maspo.folder_lock.FolderBusy`` names the one that is (``what``: e.g. "the run
    folder"). A folder it creates and leaves empty is removed again."""
    return hold(Path(folder) / LOCK_FILE, what, command)


RESUME_HINT = ("the checkpoints already written are intact: free some space (or make the "
               "folder writable), then continue with --resume")


class RunLog:
    """Where a training run's steps go: metrics.jsonl, samples.jsonl and the trackers of
    ``train.report_to`` (``maspo.trackers``).

    Opened for a resume at ``resume_step``, it first cuts both JSONL files back to that
    step (-1: to nothing) and reopens the run's tracker runs. A failed write (a full
    disk, a folder gone read-only) is one sentence (``maspo.paths.writing``). Used as a
    context manager, it closes the trackers on the way out, a run that raised as failed.
    """

    def __init__(self, run: RunDir, resume_step: int | None, config: Config,
                 label: RunLabel | None = None) -> None:
        from maspo.config import resolved

        self.run = run
        with self.writing():
            if resume_step is not None:
                truncate_jsonl(run.metrics, resume_step)
                truncate_jsonl(run.samples, resume_step)
            label = label or RunLabel(DEFAULT_PROJECT, run.root.resolve().name)
            ids = run.read_tracker_ids() if resume_step is not None else {}
            self.trackers = Trackers(config.train.report_to, Destination(
                label, resolved(config), run.tensorboard, run.root, ids, resume_step))
            run.write_tracker_ids({**ids, **self.trackers.ids()})

    def writing(self):
        return writing(f"the logs of {str(self.run.root)!r}", RESUME_HINT)

    def write(self, record: dict[str, Any], samples: Sequence[dict[str, Any]] = ()) -> None:
        with self.writing():
            append_jsonl(self.run.metrics, [record])
            self.trackers.log(record)
            if samples:
                append_jsonl(self.run.samples, samples)

    def close(self, ok: bool = True) -> None:
        """Close the trackers (quietly: a write error is already on its way)."""
        with contextlib.suppress(*write_errors()):
            self.trackers.close(ok)

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(ok=kind is None)


# ---------------------------------------------------------------------------------------
# Starting and resuming.


def default_output_dir(config: Config) -> Path:
    return Path("runs") / f"{config.loss.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_resumable(saved: Config | dict[str, Any], new: Config | dict[str, Any]) -> None:
    """UserError naming the first key other than ``RESUMABLE_KEYS`` that differs."""
    for key, was, now in changes(saved, new):
        if key in PINNED_KEYS and keeps_pin(was, now, PINNED_KEYS[key]):
            continue  # the id the run started with, which keeps its commit (maspo.hub)
        if key not in RESUMABLE_KEYS:
            raise UserError(f"cannot resume with {key}={now!r}: the run was started with "
                            f"{was!r} and only {', '.join(RESUMABLE_KEYS)} may change; drop "
                            "the override or start a new run in another train.output_dir")


def _no_run_to_resume(run: RunDir) -> UserError:
    return UserError(f"cannot resume: {str(run.root)!r} has no config.yaml (is "
                     "train.output_dir the run's directory?)")


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> Config:
    """A run's saved config with ``overrides`` applied, for ``--resume``.

    Overrides of ``RESUMABLE_KEYS`` change the run (e.g. more ``train.steps``); any other
    override must repeat the saved value (so a full original command line also resumes).
    """
    run = RunDir(Path(run_dir))
    if not run.config.is_file():
        raise _no_run_to_resume(run)
    saved = config_from_saved(run.config.read_text(), f"run config {str(run.config)!r}")
    base = dataclasses.replace(saved, train=dataclasses.replace(
        saved.train, output_dir=str(run.root)))
    config = apply_overrides(base, overrides)
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, output_dir=str(run.root)))
    check_resumable(base, config)
    validate(config)
    return config


def pin_config(config: Config, saved: Config | None = None) -> Config:
    """``config`` with every hub id of ``PINNED_KEYS`` at a commit: the saved config's
    commit where ``saved`` (a resumed run's) pinned the same id, else the one it resolves
    to now."""
    def pinned(now: str | None, before: str | None, kind: str) -> str | None:
        return before if keeps_pin(before, now, kind) else pin(now, kind)

    model, data = config.model, config.data
    old_model = saved.model if saved is not None else None
    old_data = saved.data if saved is not None else None
    return dataclasses.replace(
        config,
        model=dataclasses.replace(model, path=pinned(
            model.path, old_model and old_model.path, MODEL)),
        data=dataclasses.replace(
            data, path=pinned(data.path, old_data and old_data.path, DATASET),
            test_path=pinned(data.test_path, old_data and old_data.test_path, DATASET)))


def check_run_dir(config: Config, output_dir: str | Path, resume: bool) -> RunDir:
    """The run's folder, checked without writing anything: a new run needs a free,
    writable folder; a resumed one its saved config, equal but for ``RESUMABLE_KEYS``.
    Neither while another process writes the folder (``maspo.folder_lock``)."""
    writer = RunDir(Path(output_dir).expanduser()).writer()
    if writer is not None:
        raise busy("the run folder", Path(output_dir), writer)
    if resume:
        run = RunDir(Path(output_dir).expanduser())
        if not run.config.is_file():
            raise _no_run_to_resume(run)
        for folder in (run.root, run.checkpoints, run.tensorboard):
            problem = write_problem(folder) if folder.is_dir() else None
            if problem is not None:
                raise UserError(f"cannot resume the run in {str(run.root)!r}: {str(folder)!r} "
                                f"is not writable ({problem}); make it writable, or copy the "
                                "run elsewhere and resume it there")
        saved = yaml.safe_load(run.config.read_text()) or {}
        check_resumable(with_defaults(saved), to_dict(config))
        return run
    run = RunDir(check_output_dir(output_dir, "train.output_dir"))
    if run.holds_training():
        raise UserError(f"output directory {str(run.root)!r} already holds a run; pass "
                        "--resume to continue it or choose another train.output_dir")
    return run


def prepare_run_dir(config: Config, output_dir: str | Path, resume: bool = False) -> RunDir:
    """``check_run_dir``, then ``write_config`` (the trainer does the two apart, with the
    model loaded in between, so a failed start writes nothing)."""
    run = check_run_dir(config, output_dir, resume)
    run.write_config(config)
    return run
