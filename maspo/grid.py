"""The runs of a comparison, one after another or in N processes.

Each run is trained (or resumed, or skipped when done), its final model evaluated on its
held-out set (the verdicts cached in its folder), and then its checkpoints and final
model are deleted unless kept: what a comparison reads afterwards is the run's config,
metrics, samples, summary and final evaluation. All of it happens while the process holds
the run folder's lock (``maspo.run.hold_folder``; the comparison's folder has its own).
A run the trainer stops (repeated non-finite updates) is recorded as stopped in its
folder and stays stopped; a run that fails for any other reason (a crash, a damaged
folder) is reported with its reason, is retried when the comparison is run again, and
does not stop the others.

With ``jobs`` > 1 the runs go to a pool of that many processes, each run in one process
with ``train.threads`` set to its share of the cores (unless the config sets it).
Results come back in grid order, so they are the same as a serial comparison's. CPU
kernels may round differently with another thread count: set ``train.threads`` to make a
parallel comparison repeat a serial one bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maspo.config import Config
from maspo.data.splits import data_splits
from maspo.errors import UserError
from maspo.evaluate import EvalSettings, sample_and_score, verdicts_record
from maspo.run import RunDir, RunSummary, hold_folder
from maspo.trackers import RunLabel
from maspo.update import TrainingStopped


@dataclass(frozen=True)
class RunTask:
    """One run of the grid and what to do with it (picklable: it crosses processes)."""

    label: str  # e.g. "maspo:mass_adaptive=false seed 3"
    config: Config  # the run's config (its train.output_dir is the run folder)
    settings: EvalSettings  # the final evaluation (its seed: the run's seed)
    device: str  # final evaluation device
    keep_checkpoints: bool = False  # keep checkpoints/ once the run is evaluated
    keep_model: bool = False  # keep final_model/ once the run is evaluated
    tracking: RunLabel | None = None  # the run's name in its trackers (train.report_to)
    step0_cache: Path | None = None  # the evaluation before training, shared by its seed

    @property
    def run(self) -> RunDir:
        return RunDir(Path(self.config.train.output_dir))


@dataclass
class RunOutcome:
    """What became of one run."""

    summary: RunSummary | None  # the trainer's summary (None unless finished)
    final_eval: dict[str, Any] | None  # the cached final evaluation (None unless finished)
    stopped: str | None = None  # why the trainer stopped it (non-finite updates)
    failed: str | None = None  # why it failed otherwise (a crash, a damaged folder)
    wall_s: float = 0.0  # time this call spent on it


def run_one(task: RunTask, progress: bool = False, announce: str | None = None) -> RunOutcome:
    """Train, evaluate and prune one run; a failure is returned, not raised.

    ``announce`` (e.g. "[3/30]") prints the run's start line here, in the process that runs
    it, so a pool's log says when a run starts rather than when it was queued.
    """
    from maspo.trainer import train

    t0 = time.perf_counter()
    run, config = task.run, task.config
    if announce is not None:
        print(f"{announce} {task.label}: {_state(run)} ({run.root})", flush=True)
    try:
        with hold_folder(run.root, "the run folder", f"maspo compare, run {task.label}"):
            if run.stopped_reason() is None:
                status = run.status()
                try:
                    if status != "done":
                        train(config, resume=status == "resumable", progress=progress,
                              output_dir=run.root, label=task.tracking,
                              step0_cache=task.step0_cache)
                except TrainingStopped as err:  # a diverged run is a result, not a crash
                    run.write_stopped(str(err))
            reason = run.stopped_reason()
            if reason is not None:
                return RunOutcome(None, None, stopped=reason, wall_s=time.perf_counter() - t0)
            final = final_eval(config, run, task.settings, task.device)
            prune(run, task.keep_checkpoints, task.keep_model)
            return RunOutcome(run.read_summary(), final, wall_s=time.perf_counter() - t0)
    except Exception as err:  # any other failure is this run's, not the comparison's
        why = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        return RunOutcome(None, None, failed=why, wall_s=time.perf_counter() - t0)


def final_eval(config: Config, run: RunDir, settings: EvalSettings,
               device: str) -> dict[str, Any]:
    """Held-out verdicts of the run's final model (cached in the run folder)."""
    from maspo.eval_specs import loaded_for_eval, locate_model
    from maspo.precision import resolve_precision

    wanted = settings.record()
    saved = run.read_final_eval(wanted)
    if saved is not None:
        return saved
    if not run.has_final_model() and run.latest_checkpoint() is None:
        raise UserError(f"run {str(run.root)!r} was evaluated with other settings and its "
                        "model was not kept (--keep-models); evaluate with the earlier "
                        "settings, or delete the run folder to train it again")
    precision = resolve_precision(config.train.precision, device)  # the run's own
    examples = data_splits(config.data, config.train.seed).heldout
    with loaded_for_eval(locate_model(str(run.root)), device=device,
                         precision=precision) as (model, tokenizer):
        t0 = time.perf_counter()
        results = sample_and_score(model, tokenizer, examples, settings)
    record = verdicts_record(results, wanted, time.perf_counter() - t0)
    run.write_final_eval(record)
    return record


def prune(run: RunDir, keep_checkpoints: bool, keep_model: bool) -> None:
    """Delete what an evaluated run no longer needs (its final evaluation is cached)."""
    if not keep_checkpoints:
        shutil.rmtree(run.checkpoints, ignore_errors=True)
    if not keep_model:
        shutil.rmtree(run.final_model, ignore_errors=True)


def thread_share(jobs: int) -> int:
    """Torch threads for each of ``jobs`` concurrent runs: the usable cores split evenly."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    return max(1, cores // jobs)


def run_grid(tasks: Sequence[RunTask], jobs: int = 1, progress: bool = True,
             log: Callable[[str], Any] = print) -> list[RunOutcome]:
    """Every task's outcome, in the order of ``tasks``; ``jobs`` processes at a time."""
    total = len(tasks)

    def say(message: str) -> None:  # flushed: the pool's processes write to the same stream
        log(message)
        sys.stdout.flush()

    def said(i: int, outcome: RunOutcome) -> None:
        if outcome.stopped is not None:
            say(f"    [{i}/{total}] stopped: {outcome.stopped} (counted as stopped; delete "
                f"{tasks[i - 1].run.stopped} to retry)")
        elif outcome.failed is not None:
            say(f"    [{i}/{total}] failed: {outcome.failed} (run the comparison again to "
                "retry it)")

    if jobs <= 1 or total <= 1:
        outcomes = []
        for i, task in enumerate(tasks, start=1):
            say(f"[{i}/{total}] {task.label}: {_state(task.run)} ({task.run.root})")
            outcomes.append(run_one(task, progress))
            said(i, outcomes[-1])
        return outcomes
    threads = thread_share(jobs)
    parallel = [task if task.config.train.threads else dataclasses.replace(
        task, config=dataclasses.replace(task.config, train=dataclasses.replace(
            task.config.train, threads=threads))) for task in tasks]
    # finished and evaluated runs are read here, not sent to the pool
    done = {i: run_one(task) for i, task in enumerate(tasks, start=1) if _settled(task)}
    import multiprocessing

    say(f"{total} runs, {jobs} at a time" + (f" ({len(done)} already done)" if done else ""))
    from maspo.memory import keep_freed_memory

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=keep_freed_memory) as pool:  # as `maspo` does
        order = spread([i for i in range(1, total + 1) if i not in done],
                       lambda i: tasks[i - 1].step0_cache, jobs)
        futures = {pool.submit(run_one, parallel[i - 1], False, f"[{i}/{total}]"): i
                   for i in order}
        for future in as_completed(futures):
            i = futures[future]
            done[i] = future.result()
            say(f"[{i}/{total}] {tasks[i - 1].label}: finished in {done[i].wall_s:.0f} s "
                f"({len(done)} of {total} done)")
            said(i, done[i])
    return [done[i] for i in range(1, total + 1)]


def spread(items: Sequence[int], key: Callable[[int], Any], jobs: int) -> list[int]:
    """``items`` reordered so that no two of any ``jobs`` in a row share a ``key`` where
    another order allows it (runs of one seed, which share the evaluation before training,
    then start one after another, not side by side waiting on each other)."""
    left, order = list(items), []
    while left:
        recent = {key(i) for i in order[-(jobs - 1):]} if jobs > 1 else set()
        pick = next((i for i in left if key(i) not in recent), left[0])
        left.remove(pick)
        order.append(pick)
    return order


def _settled(task: RunTask) -> bool:
    """Whether the run is stopped, or done with its final evaluation cached (nothing to
    train or evaluate)."""
    run = task.run
    return run.stopped_reason() is not None or (
        run.status() == "done" and run.read_final_eval(task.settings.record()) is not None)


def _state(run: RunDir) -> str:
    return {"new": "training", "resumable": "resuming"}.get(run.status(), run.status())
