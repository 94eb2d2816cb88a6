"""The RLVR loop, top to bottom: sample -> score -> advantages -> old log-probs -> K updates.

``train`` builds the parts of a run from its config (``maspo.parts.RunParts``) and a
learner (``Trainer``), restores the newest checkpoint or starts afresh, then per step:
``Trainer.train_step`` (P prompts, G
completions each from the rollout engine, scored by each example's verifier, group
advantages, the old policy's statistics and the K mini-batch updates of
``maspo.update``), a held-out evaluation when due, one line of metrics, a checkpoint when
due; at the end the final model, the summary and the curves.

Randomness is drawn from seeds derived from (train.seed, step), which makes a resumed run
repeat a killed one bit for bit on CPU (on a GPU, kernels are not bitwise deterministic:
a resumed run is equivalent, not identical).

Common random numbers: the candidate prompts of step t, draw d are the training stream's
slots ((t - 1) * D + d) * P to ... + P - 1 (D the draws a step may make), and their
sampling seed is derived from (train.seed, t, d) (``maspo.seeds``), each group's noise
from that and its position (``maspo.rollout.sampler``). Neither depends on what earlier
steps drew, so the runs of one seed with different objectives sample their first step
identically and see the same candidate prompts at every step: their difference is the
objectives', not the draws'.

Shared evaluations: given ``step0_cache`` (a comparison's file for the seed), the
held-out evaluation before training is made once for all runs that share its model, data,
seed and evaluation settings, and read back by the others. The last step's evaluation is
kept per problem in the run folder (``final_eval.json``), so a comparison whose final
evaluation has the same settings scores the final model once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from maspo.checkpoint import SharedWeights, latest_saved, load_checkpoint, save_checkpoint
from maspo.config import Config, to_dict
from maspo.data.splits import PromptSlots
from maspo.errors import Interrupted, UserError
from maspo.evaluate import (
    ProblemResult,
    avg_accuracy,
    same_settings,
    sample_and_score,
    verdicts_record,
)
from maspo.parts import RunParts, TrainState
from maspo.paths import write_atomic, writing
from maspo.precision import weight_cache
from maspo.rewards import default_verifier
from maspo.run import (
    RESUME_HINT,
    RunDir,
    RunLog,
    RunSummary,
    check_run_dir,
    default_output_dir,
    hold_folder,
    pin_config,
)
from maspo.step_log import Clock, draw_metrics, saved_completions
from maspo.trackers import RunLabel, check_installed
from maspo.update import UpdateSettings


@dataclass
class StepResult:
    record: dict[str, Any]  # the step's line of metrics
    samples: list[dict[str, Any]]  # the completions it saves


class Trainer:
    """A run: its parts (``RunParts``), the learner that trains the policy, its folder."""

    def __init__(self, config: Config, run: RunDir) -> None:
        self.config, self.run = config, run
        self.parts = RunParts.build(config)
        self.learner = self.parts.learner()
        self.update_settings = UpdateSettings.of(config)

    def train_step(self, step: int, state: TrainState, slots: PromptSlots) -> StepResult:
        """One rollout (or, with dynamic sampling, several) and its K updates; ``state``
        is brought up to date."""
        clock = Clock(self.parts.device)
        torch.manual_seed(self.parts.step_seed(step))  # any other draw this step (e.g. dropout)
        record: dict[str, Any] = {"step": step}
        # bf16: sampling, old log-probs and the first update share one cast of the weights,
        # each later update casts them anew after its optimizer step (maspo.precision)
        with weight_cache(self.parts.precision_mode, self.parts.device):
            if self.config.rollout.filter_groups:
                drawn, stats = self.parts.draw_untied(step, state, slots, clock)
                record.update(draw_metrics(stats))
            else:
                drawn = self.parts.draw(step, 0, state, slots, clock)
            if drawn is not None:
                record.update(self.parts.learn(self.learner, self.update_settings, step, state,
                                               drawn, clock))
        record.update({"lr": self.learner.scheduler.get_last_lr()[0],
                       "examples_seen": state.examples_seen})
        stats = default_verifier().stats  # cumulative; failures score 0 and are counted
        record["verifier/timeouts"] = stats.timeouts
        record["verifier/errors"] = stats.errors
        record.update(clock.record())
        samples = [] if drawn is None else saved_completions(
            step, drawn, self.config.train.samples_per_step)
        return StepResult(record, samples)

    def evaluate(self) -> float:
        """Avg@n on the held-out set (``train.eval_samples`` per prompt)."""
        return avg_accuracy(self.heldout_results())

    def step0_key(self) -> dict[str, Any]:
        """What the held-out evaluation before training depends on (a shared one must
        match it all): the model, the data and seed, the evaluation and the precision."""
        c = self.config
        return {"model": to_dict(c)["model"], "data": to_dict(c)["data"],
                "seed": c.train.seed, "eval": self.parts.eval_settings.record(),
                "precision": self.parts.precision_mode, "device": str(self.parts.device)}

    def heldout_results(self) -> list[ProblemResult]:
        """The held-out prompts sampled and scored, at the run's precision."""
        p = self.parts
        with p.precision():
            return sample_and_score(p.model, p.tokenizer, p.splits.heldout, p.eval_settings,
                                    p.scorer)

    def restore(self, checkpoint: Path) -> TrainState:
        """Weights, optimizer, scheduler and RNG states from ``checkpoint`` (verified)."""
        learner = self.learner
        saved = load_checkpoint(checkpoint, learner.model, learner.optimizer,
                                learner.scheduler, verify=False)
        return TrainState.from_checkpoint(saved)

    def save(self, state: TrainState, shared: SharedWeights | None = None) -> None:
        """Checkpoint ``state``; its weights file links ``shared`` where that holds them."""
        learner = self.learner
        save_checkpoint(self.run.checkpoints, state.step, learner.model, learner.optimizer,
                        learner.scheduler, state.saved(),
                        keep=self.config.train.keep_checkpoints, shared=shared)


# ---------------------------------------------------------------------------------------
# The loop.


def train(config: Config, *, resume: bool = False, progress: bool = True,
          output_dir: str | Path | None = None, label: RunLabel | None = None,
          step0_cache: Path | None = None) -> RunSummary:
    """Run (or resume) training; returns the summary it also writes to the run folder.
    ``label`` names the run in its trackers (default: project maspo, the folder's name);
    ``step0_cache``: a file the held-out evaluation before training is shared through by
    the runs it fits (see the module docstring).

    The process is the run folder's one writer throughout (``maspo.run.hold_folder``): a
    second one is refused before its model loads. Ctrl-C or SIGTERM ends it with an
    ``Interrupted`` that names the checkpoint ``--resume`` continues from.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    check_installed(config.train.report_to)  # before the model loads
    root = _output_dir(config, output_dir, resume)
    with hold_folder(root, "the run folder"):
        try:
            return _train(config, check_run_dir(config, root, resume), resume, progress,
                          label, step0_cache)
        except KeyboardInterrupt as stop:
            raise Interrupted(_interrupted(RunDir(root))) from stop


def _interrupted(run: RunDir) -> str:
    """Where ``--resume`` goes on from after an interrupt."""
    if not run.config.is_file():
        return "before training started; nothing was written"
    latest = latest_saved(run.checkpoints)
    again = f"maspo train --resume train.output_dir={run.root}"
    if latest is None:
        return (f"before the run in {str(run.root)!r} saved a checkpoint: none exists, and "
                f"`{again}` starts it over")
    return (f"after checkpoint {latest} of the run in {str(run.root)!r}: `{again}` continues "
            "from it (steps logged after it are trained again)")


def _train(config: Config, run: RunDir, resume: bool, progress: bool,
           label: RunLabel | None, step0_cache: Path | None) -> RunSummary:
    # hub ids at the commit they resolve to now, or (resumed) to the one the run started at
    config = pin_config(config, run.read_config() if resume else None)
    checkpoint = run.latest_checkpoint() if resume else None  # verified
    trainer = Trainer(config, run)
    state = trainer.restore(checkpoint) if checkpoint is not None else TrainState()
    with writing(f"the run folder {str(run.root)!r}", "free some space or choose another "
                 "train.output_dir" if not resume else RESUME_HINT):
        run.write_config(config)  # only now: a failed start leaves nothing behind
    _announce(trainer, checkpoint)
    # on resume, drop what the killed run logged after its last checkpoint (all of it if
    # it died before the first one: the run then starts over)
    log = RunLog(run, state.step if checkpoint is not None else -1 if resume else None,
                 config, label)
    slots = trainer.parts.splits.train_slots()
    t = config.train
    bar = tqdm(total=t.steps, initial=state.step, disable=not progress, desc="train",
               unit="step", dynamic_ncols=True)
    final_written = False
    with log, contextlib.closing(bar):
        if state.step == 0:
            record = {"step": 0, **_step0_eval(trainer, step0_cache)}
            state.eval_before = record["eval/accuracy"]
            log.write(record)
            bar.set_postfix(eval_acc=f"{state.eval_before:.3f}")
        for step in range(state.step + 1, t.steps + 1):
            cpu = time.process_time()
            result = trainer.train_step(step, state, slots)
            result.record["time/step_cpu"] = time.process_time() - cpu
            state.step = step
            if _due(step, t.eval_every, t.steps):
                result.record.update(_timed_eval(trainer, last=step == t.steps))
            log.write(result.record, result.samples)
            bar.set_postfix(_progress(result.record))
            bar.update(1)
            shared = None
            if step == t.steps:  # the final model before the checkpoint, which links it
                shared, final_written = _write_final_model(trainer), True
            if _due(step, t.save_every, t.steps):
                trainer.save(state, shared)
    return _finish(trainer, state, final_written)


def _output_dir(config: Config, output_dir: str | Path | None, resume: bool) -> Path:
    if output_dir is None and config.train.output_dir is None:
        if resume:
            raise UserError("--resume needs the run directory: set train.output_dir")
        return default_output_dir(config)
    return Path(output_dir or config.train.output_dir)


def _announce(trainer: Trainer, checkpoint: Path | None) -> None:
    c = trainer.config
    dtype = next(trainer.parts.model.parameters()).dtype
    mixed = ", bf16 autocast" if trainer.parts.precision_mode == "bf16" else ""
    print(f"maspo: training {c.loss.name} on {trainer.learner.device} "
          f"({str(dtype).removeprefix('torch.')} weights{mixed})"
          + (f", resuming from {checkpoint.name}" if checkpoint is not None else ""))


def _due(step: int, every: int, last: int) -> bool:
    """Whether a periodic action (0: never) falls on ``step``; the last step always."""
    return step == last or bool(every and step % every == 0)


def _timed_eval(trainer: Trainer, last: bool = False) -> dict[str, float]:
    """The held-out evaluation's line of metrics; the last step's verdicts are kept in
    the run folder too (a comparison's final evaluation when its settings match)."""
    t0, cpu = time.perf_counter(), time.process_time()
    results = trainer.heldout_results()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu
    if last:
        with writing(f"the final evaluation in {str(trainer.run.root)!r}",
                     "free some space, then finish the run with --resume"):
            trainer.run.write_final_eval(verdicts_record(
                results, trainer.parts.eval_settings.record(), elapsed))
    return {"eval/accuracy": avg_accuracy(results), "time/eval": elapsed,
            "time/eval_cpu": cpu}


def _step0_eval(trainer: Trainer, cache: Path | None) -> dict[str, Any]:
    """The evaluation before training, made once per ``cache`` file for every run whose
    ``step0_key`` matches (runs of a comparison at one seed); ``eval/shared`` marks a
    score read back rather than measured (its ``time/eval`` is then 0)."""
    if cache is None:
        return _timed_eval(trainer)
    key = trainer.step0_key()
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.with_name(cache.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a run of the same seed may be measuring it now
        saved = json.loads(cache.read_text()) if cache.is_file() else None
        if saved is not None and _same_key(saved["key"], key):
            return {"eval/accuracy": saved["accuracy"], "time/eval": 0.0, "time/eval_cpu": 0.0,
                    "eval/shared": 1}
        record = _timed_eval(trainer)
        write_atomic(cache, json.dumps({"key": key, "accuracy": record["eval/accuracy"],
                                        "eval_time_s": record["time/eval"]}) + "\n")
        return record


def _same_key(saved: dict[str, Any], key: dict[str, Any]) -> bool:
    """Whether a shared step-0 evaluation's key is ``key`` (its settings by ``same_settings``)."""
    saved, key = dict(saved), dict(key)
    return same_settings(saved.pop("eval", {}), key.pop("eval")) and saved == key


def _progress(record: dict[str, Any]) -> dict[str, str]:
    """The progress bar's live figures (a step without an update has no reward); with
    dynamic sampling, the reward and accuracy of every completion drawn, not only of the
    kept groups (which filtering pulls towards the middle)."""
    drawn = "dynamic/reward_drawn" in record
    shown = {"reward": "dynamic/reward_drawn" if drawn else "reward",
             "acc": "dynamic/accuracy_drawn" if drawn else "accuracy",
             "kept": "dynamic/groups_kept", "eval_acc": "eval/accuracy"}
    return {name: f"{record[key]:.3g}" if key == "dynamic/groups_kept" else
            f"{record[key]:.3f}" for name, key in shown.items() if key in record}


def _finish_hint(run: RunDir) -> str:
    """What a user does after a failed write at the end of a run."""
    latest = latest_saved(run.checkpoints)
    if latest is None:
        return "free some space, then --resume starts the run over"
    return f"checkpoint {latest} is intact: free some space, then finish the run with --resume"


def _write_final_model(trainer: Trainer) -> SharedWeights | None:
    """Save the final model (sealed with checksums); its weights file, which the last
    checkpoint may link (None where the model has no single ``model.safetensors``)."""
    from transformers.utils import SAFE_WEIGHTS_NAME  # model.safetensors

    run = trainer.run
    with writing(f"the final model in {str(run.final_model)!r}", _finish_hint(run)):
        files = run.write_final_model(trainer.parts.model, trainer.parts.tokenizer)
    weights = files.get(SAFE_WEIGHTS_NAME)
    return None if weights is None else SharedWeights(run.final_model / SAFE_WEIGHTS_NAME,
                                                      weights["sha256"])


def _finish(trainer: Trainer, state: TrainState, final_written: bool) -> RunSummary:
    """Save the final model (unless the last step did), the summary and the curves."""
    from maspo.plots import plot_run
    from maspo.provenance import maspo_commit

    run, config = trainer.run, trainer.config
    records = run.read_metrics()
    final = next((r["eval/accuracy"] for r in reversed(records) if "eval/accuracy" in r), None)
    if not final_written:  # (a finished run resumed to write it again)
        _write_final_model(trainer)
    hint = _finish_hint(run)
    summary = RunSummary(
        objective=config.loss.name, steps=config.train.steps,
        eval_accuracy_before=state.eval_before, eval_accuracy_after=final,
        eval_prompts=len(trainer.parts.splits.heldout),
        eval_samples_per_prompt=config.train.eval_samples,
        skipped_updates=state.skipped_updates,
        train_time_s=sum(r.get("time/step", 0.0) + r.get("time/eval", 0.0) for r in records),
        run_dir=str(run.root),
        train_cpu_s=sum(r.get("time/step_cpu", 0.0) + r.get("time/eval_cpu", 0.0)
                        for r in records),  # this process's CPU (threads summed)
        maspo_commit=maspo_commit())
    with writing(f"the summary and curves of {str(run.root)!r}", hint):
        plot_run([run.root], run.curves)
        run.write_summary(summary)  # last: a run with a summary is done
    return summary
