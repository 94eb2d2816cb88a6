"""The RLVR loop, top to bottom: sample -> score -> advantages -> old log-probs -> K updates.

``train`` builds the parts of a run from its config (``Trainer``), restores the newest
checkpoint or starts afresh, then per step: ``Trainer.train_step`` (P prompts, G
completions each from the rollout engine, scored by each example's verifier, group
advantages, the old policy's statistics and the K mini-batch updates of
``maspo.update``), a held-out evaluation when due, one line of metrics, a checkpoint when
due; at the end the final model, the summary and the curves.

Randomness is drawn from seeds derived from (train.seed, step), which makes a resumed run
repeat a killed one bit for bit on CPU (on a GPU, kernels are not bitwise deterministic:
a resumed run is equivalent, not identical).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from maspo import advantages as adv_lib
from maspo.checkpoint import load_checkpoint, save_checkpoint
from maspo.config import Config
from maspo.data import Example, render_prompt
from maspo.data.splits import data_splits
from maspo.devices import resolve_device
from maspo.errors import UserError
from maspo.evaluate import ProblemResult, avg_accuracy, eval_settings, sample_and_score
from maspo.hub import pin_config
from maspo.models import LoraSettings, load_policy, resolve_model
from maspo.paths import writing
from maspo.precision import autocast, prepare_model, resolve_precision
from maspo.rewards import default_verifier
from maspo.rewards.scoring import Scorer
from maspo.rollout import LocalSampler, RolloutEngine, SamplingSettings
from maspo.rollout.groups import Drawn, DrawStats, draw_untied
from maspo.run import RESUME_HINT, RunDir, RunLog, check_run_dir, default_output_dir
from maspo.step_log import Clock, draw_metrics, rollout_metrics, saved_completions
from maspo.trackers import RunLabel, check_installed
from maspo.update import (
    Learner,
    TrainingStopped,
    UpdateSettings,
    old_policy_stats,
    policy_update,
    scoring_order,
)

EVAL_SEED_OFFSET = 1_000_003  # held-out sampling seeds differ from every training step's
STEP_SEED_STRIDE = 7_919  # step seeds: seed * stride + step (distinct across seeds too)
DRAW_SEED_STRIDE = 1_000_033  # dynamic sampling: draw i of a step samples at its seed + i * this

@dataclass
class TrainState:
    """What a run carries from step to step besides weights and optimizer (checkpointed)."""

    examples_seen: int = 0  # training prompts drawn so far (where a resumed stream goes on)
    bad_streak: int = 0  # non-finite updates in a row
    skipped_updates: int = 0  # non-finite updates skipped in all
    eval_before: float | None = None  # held-out accuracy before training
    step: int = 0  # the last step done

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})

    def saved(self) -> dict[str, Any]:
        """The fields a checkpoint keeps (it adds the step itself)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "step"}


@dataclass
class StepResult:
    record: dict[str, Any]  # the step's line of metrics
    samples: list[dict[str, Any]]  # the completions it saves


class Trainer:
    """The parts of a run, built once from its config."""

    def __init__(self, config: Config, run: RunDir) -> None:
        c = self.config = config
        self.run = run
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        torch.manual_seed(c.train.seed)
        self.splits = data_splits(c.data, c.train.seed)  # bad rows fail before the model loads
        model_dir = resolve_model(c.model.path)
        device = resolve_device(c.train.device, "train.device")
        self.model, self.tokenizer = load_policy(model_dir, device=device,
                                                 lora=LoraSettings.of(c.model.lora))
        self.precision_mode = resolve_precision(c.train.precision, device)  # fp32 or bf16
        prepare_model(self.model, self.precision_mode)
        ref = None
        if c.loss.kl_coef > 0:  # frozen copy of the initial policy for the k3 penalty
            ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.learner = Learner.create(self.model, ref, c.optim, device, c.optim.warmup_steps)
        self.update_settings = UpdateSettings.of(c)
        self.scorer = Scorer(c.reward.functions, c.reward.format_weight,
                             c.reward.score_truncated)
        self.eval_settings = eval_settings(c, n=c.train.eval_samples,
                                           seed=c.train.seed + EVAL_SEED_OFFSET)
        r = c.rollout
        self.sampler: RolloutEngine = LocalSampler(self.model, self.tokenizer, SamplingSettings(
            max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p))

    def precision(self):
        """Autocast context of the forward passes (sampling, log-probs, updates, evaluation):
        bf16 matmuls when ``train.precision`` is (or ``auto`` picks) bf16.

        Kept in fp32 either way: weights, gradients, optimizer state, the logits once
        computed (softmax, log-probs, entropies) and the loss (``maspo.precision``).
        """
        return autocast(self.precision_mode, self.learner.device)

    def step_seed(self, step: int) -> int:
        return self.config.train.seed * STEP_SEED_STRIDE + step

    def render(self, examples: list[Example]) -> list[str]:
        d = self.config.data
        return [render_prompt(self.tokenizer, ex.prompt, d.system_prompt, d.chat_template)
                for ex in examples]

    def train_step(self, step: int, state: TrainState, stream) -> StepResult:
        """One rollout (or, with dynamic sampling, several) and its K updates; ``state``
        is brought up to date."""
        clock = Clock(self.learner.device)
        torch.manual_seed(self.step_seed(step))  # any other draw this step (e.g. dropout)
        record: dict[str, Any] = {"step": step}
        if self.config.rollout.filter_groups:
            drawn, stats = self.draw_untied(step, state, stream, clock)
            record.update(draw_metrics(stats))
        else:
            drawn = self.draw(step, 0, state, stream, clock)
        if drawn is not None:
            record.update(self.learn(step, state, drawn, clock))
        record.update({"lr": self.learner.scheduler.get_last_lr()[0],
                       "examples_seen": state.examples_seen})
        stats = default_verifier().stats  # cumulative; failures score 0 and are counted
        record["verifier/timeouts"] = stats.timeouts
        record["verifier/errors"] = stats.errors
        record.update(clock.record())
        samples = [] if drawn is None else saved_completions(
            step, drawn, self.config.train.samples_per_step)
        return StepResult(record, samples)

    def draw(self, step: int, index: int, state: TrainState, stream, clock: Clock) -> Drawn:
        """The ``index``-th batch of P prompts of ``step``, sampled G times each and scored."""
        r = self.config.rollout
        examples = [next(stream) for _ in range(r.prompts_per_step)]
        state.examples_seen += len(examples)
        with self.precision():
            seed = self.step_seed(step) + index * DRAW_SEED_STRIDE
            rollout = self.sampler.generate(self.render(examples), r.group_size, seed=seed)
        clock.lap("generate")
        repeated = [ex for ex in examples for _ in range(r.group_size)]
        scores = self.scorer.score(repeated, rollout.texts, rollout.truncated.tolist())
        clock.lap("score")
        return Drawn(examples, rollout, scores)

    def draw_untied(self, step: int, state: TrainState, stream, clock: Clock
                    ) -> tuple[Drawn | None, DrawStats]:
        """Dynamic sampling: draws until P groups have unequal rewards, or the bound."""
        r = self.config.rollout
        drawn, stats = draw_untied(lambda i: self.draw(step, i, state, stream, clock),
                                   r.prompts_per_step, r.max_draws)
        if stats.kept < r.prompts_per_step:
            found = (f"step {step}: {stats.kept} of {r.prompts_per_step} groups had unequal "
                     f"rewards after {stats.draws} draws (rollout.max_draws)")
            if r.at_max_draws == "stop":
                raise TrainingStopped(f"stopped at {found}; raise rollout.max_draws or set "
                                      "rollout.at_max_draws=train")
            tqdm.write(f"maspo: {found}; training on "
                       + ("those" if stats.kept else "none: no update this step"))
        return drawn, stats

    def learn(self, step: int, state: TrainState, drawn: Drawn, clock: Clock
              ) -> dict[str, Any]:
        """Advantages, the old policy's statistics and the K updates on ``drawn``."""
        c, rollout = self.config, drawn.rollout
        advantages = adv_lib.estimate(c.loss.advantage, drawn.rewards, rollout.group_size)
        advantages = advantages.to(self.learner.device)  # (B,)
        clock.lap("score")
        order = scoring_order(rollout, advantages, self.update_settings, self.step_seed(step))
        with self.precision():  # each row scored in the micro-batch its update will use
            old = old_policy_stats(self.learner, rollout, self.update_settings, order)
        if c.loss.entropy_advantage:
            advantages = adv_lib.entropy_advantage(advantages, old.entropy,
                                                   rollout.completion_mask)  # (B, T)
        clock.lap("old_logprobs")
        with self.precision():
            update = policy_update(self.learner, rollout, old, advantages, self.update_settings,
                                   seed=self.step_seed(step), bad_streak=state.bad_streak,
                                   step=step)
        state.bad_streak = update.bad_streak
        state.skipped_updates += update.skipped
        clock.lap("update")
        return {**rollout_metrics(drawn, advantages, old.entropy), **update.metrics}

    def evaluate(self) -> float:
        """Avg@n on the held-out set (``train.eval_samples`` per prompt)."""
        return avg_accuracy(self.heldout_results())

    def heldout_results(self) -> list[ProblemResult]:
        """The held-out prompts sampled and scored, at the run's precision."""
        with self.precision():
            return sample_and_score(self.model, self.tokenizer, self.splits.heldout,
                                    self.eval_settings, self.scorer)

    def restore(self, checkpoint: Path) -> TrainState:
        """Weights, optimizer, scheduler and RNG states from ``checkpoint`` (verified)."""
        learner = self.learner
        saved = load_checkpoint(checkpoint, learner.model, learner.optimizer,
                                learner.scheduler, verify=False)
        return TrainState.from_checkpoint(saved)

    def save(self, state: TrainState) -> None:
        learner = self.learner
        save_checkpoint(self.run.checkpoints, state.step, learner.model, learner.optimizer,
                        learner.scheduler, state.saved(),
                        keep=self.config.train.keep_checkpoints)


# ---------------------------------------------------------------------------------------
# The loop.


def train(config: Config, *, resume: bool = False, progress: bool = True,
          output_dir: str | Path | None = None, label: RunLabel | None = None
          ) -> dict[str, Any]:
    """Run (or resume) training; returns the summary it also writes to the run folder.
    ``label`` names the run in its trackers (default: project maspo, the folder's name)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    check_installed(config.train.report_to)  # before the model loads
    run = check_run_dir(config, _output_dir(config, output_dir, resume), resume)
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
    stream = trainer.splits.train_stream(skip=state.examples_seen)
    t = config.train
    bar = tqdm(total=t.steps, initial=state.step, disable=not progress, desc="train",
               unit="step", dynamic_ncols=True)
    with log, contextlib.closing(bar):
        if state.step == 0:
            record = {"step": 0, **_timed_eval(trainer)}
            state.eval_before = record["eval/accuracy"]
            log.write(record)
            bar.set_postfix(eval_acc=f"{state.eval_before:.3f}")
        for step in range(state.step + 1, t.steps + 1):
            result = trainer.train_step(step, state, stream)
            state.step = step
            if _due(step, t.eval_every, t.steps):
                result.record.update(_timed_eval(trainer))
            log.write(result.record, result.samples)
            bar.set_postfix(_progress(result.record))
            bar.update(1)
            if _due(step, t.save_every, t.steps):
                trainer.save(state)
    return _finish(trainer, state)


def _output_dir(config: Config, output_dir: str | Path | None, resume: bool) -> Path:
    if output_dir is None and config.train.output_dir is None:
        if resume:
            raise UserError("--resume needs the run directory: set train.output_dir")
        return default_output_dir(config)
    return Path(output_dir or config.train.output_dir)


def _announce(trainer: Trainer, checkpoint: Path | None) -> None:
    c = trainer.config
    dtype = next(trainer.model.parameters()).dtype
    mixed = ", bf16 autocast" if trainer.precision_mode == "bf16" else ""
    print(f"maspo: training {c.loss.name} on {trainer.learner.device} "
          f"({str(dtype).removeprefix('torch.')} weights{mixed})"
          + (f", resuming from {checkpoint.name}" if checkpoint is not None else ""))


def _due(step: int, every: int, last: int) -> bool:
    """Whether a periodic action (0: never) falls on ``step``; the last step always."""
    return step == last or bool(every and step % every == 0)


def _timed_eval(trainer: Trainer) -> dict[str, float]:
    t0 = time.perf_counter()
    accuracy = trainer.evaluate()
    return {"eval/accuracy": accuracy, "time/eval": time.perf_counter() - t0}


def _progress(record: dict[str, Any]) -> dict[str, str]:
    """The progress bar's live figures (a step without an update has no reward)."""
    shown = {"reward": "reward", "acc": "accuracy", "kept": "dynamic/groups_kept",
             "eval_acc": "eval/accuracy"}
    return {name: f"{record[key]:.3g}" if key == "dynamic/groups_kept" else
            f"{record[key]:.3f}" for name, key in shown.items() if key in record}


def _finish(trainer: Trainer, state: TrainState) -> dict[str, Any]:
    """Save the final model (sealed with checksums), the summary and the curves."""
    from maspo.plots import plot_run

    run, config = trainer.run, trainer.config
    records = run.read_metrics()
    final = next((r["eval/accuracy"] for r in reversed(records) if "eval/accuracy" in r), None)
    hint = (f"checkpoint step-{state.step:06d} is intact: free some space, then finish the run "
            "with --resume")
    with writing(f"the final model in {str(run.final_model)!r}", hint):
        run.write_final_model(trainer.model, trainer.tokenizer)
    summary = {
        "objective": config.loss.name,
        "steps": config.train.steps,
        "eval_accuracy_before": state.eval_before,
        "eval_accuracy_after": final,
        "eval_prompts": len(trainer.splits.heldout),
        "eval_samples_per_prompt": config.train.eval_samples,
        "skipped_updates": state.skipped_updates,
        "train_time_s": sum(r.get("time/step", 0.0) + r.get("time/eval", 0.0)
                            for r in records),
        "run_dir": str(run.root),
    }
    with writing(f"the summary and curves of {str(run.root)!r}", hint):
        plot_run([run.root], run.curves)
        run.write_summary(summary)  # last: a run with a summary is done
    return summary
