"""The parts a run is built from, once, from its config, and the two halves of a step
that use them: drawing a scored rollout, and learning from it with a given learner.

The trainer (``maspo.trainer``) is these parts plus a learner, a run folder and the
loop; the mechanism probes (``maspo.probes``) build the same parts and give each
objective its own learner, so a probe's rollout and updates are the trainer's own.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from maspo import advantages as adv_lib
from maspo.config import Config
from maspo.data import Example, render_prompt
from maspo.data.splits import PromptSlots, Splits, data_splits
from maspo.devices import resolve_device
from maspo.entropy_control import EntropyCoef
from maspo.evaluate import EvalSettings, eval_settings, heldout_seed
from maspo.models import load_policy, resolve_model
from maspo.precision import autocast, prepare_model, resolve_precision
from maspo.rollout import LocalSampler, RolloutEngine, SamplingSettings
from maspo.rollout.groups import Drawn, DrawStats, draw_untied, split_drawn
from maspo.rollout.sampler import SAME_BITS_ROWS, group_seeds, rows_that_fit
from maspo.scoring import Scorer
from maspo.seeds import derive_seed
from maspo.step_log import Clock, rollout_metrics, update_metrics
from maspo.update import (
    Learner,
    TrainingStopped,
    UpdateSettings,
    deferred_rows,
    old_policy_stats,
    policy_update,
    scoring_order,
)

STEP_SEED_STRIDE = 7_919  # step seeds: seed * stride + step (distinct across seeds too)

@dataclass
class TrainState:
    """What a run carries from step to step besides weights and optimizer (checkpointed)."""

    examples_seen: int = 0  # training prompts drawn so far
    bad_streak: int = 0  # non-finite updates in a row
    skipped_updates: int = 0  # non-finite updates skipped in all
    eval_before: float | None = None  # held-out accuracy before training
    entropy_coef: float | None = None  # the entropy bonus's coefficient (None: not started)
    entropy_measured: float | None = None  # its controller's last entropy (maspo.entropy_control)
    untied_rate: float | None = None  # dynamic sampling: share of the last step's groups untied
    step: int = 0  # the last step done

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainState:
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls) if f.name in saved})

    def saved(self) -> dict[str, Any]:
        """The fields a checkpoint keeps (it adds the step itself)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "step"}




@dataclass
class RunParts:
    """What a run is built from, once: its data, the policy and the frozen reference, the
    rollout engine, the scorer and the held-out evaluation settings."""

    config: Config
    splits: Splits  # held-out prompts and the training stream
    model: torch.nn.Module  # the policy (its weights move; the sampler samples from it)
    tokenizer: Any
    device: torch.device
    precision_mode: str  # fp32 or bf16 (``train.precision`` resolved for the device)
    ref: torch.nn.Module | None  # frozen initial policy for the KL term (None: no KL)
    scorer: Scorer
    sampler: RolloutEngine
    eval_settings: EvalSettings  # the held-out evaluation between steps

    @classmethod
    def build(cls, config: Config) -> RunParts:
        """The parts of ``config``: the data first (bad rows fail before a model loads)."""
        c = config
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        torch.manual_seed(c.train.seed)
        splits = data_splits(c.data, c.train.seed)
        model_dir = resolve_model(c.model.path)
        device = resolve_device(c.train.device, "train.device")
        model, tokenizer = load_policy(model_dir, device=device, lora=c.model.lora)
        precision_mode = resolve_precision(c.train.precision, device)
        prepare_model(model, precision_mode)
        ref = None
        if c.loss.kl_coef > 0:  # frozen copy of the initial policy for the k3 penalty
            ref = copy.deepcopy(model).eval().requires_grad_(False)
        scorer = Scorer(c.reward.functions, c.reward.format_weight, c.reward.score_truncated)
        evaluation = eval_settings(c, n=c.train.eval_samples, seed=heldout_seed(c.train.seed))
        r = c.rollout
        sampler = LocalSampler(model, tokenizer, SamplingSettings(
            max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p))
        return cls(c, splits, model, tokenizer, device, precision_mode, ref, scorer, sampler,
                   evaluation)

    def learner(self, warmup_steps: int | None = None) -> Learner:
        """A fresh AdamW learner over the policy (``optim``; warm-up: the config's)."""
        o = self.config.optim
        return Learner.create(self.model, self.ref, o, self.device,
                              o.warmup_steps if warmup_steps is None else warmup_steps)

    def precision(self):
        """Autocast context of the forward passes (sampling, log-probs, updates, evaluation):
        bf16 matmuls when ``train.precision`` is (or ``auto`` picks) bf16.

        Kept in fp32 either way: weights, gradients, optimizer state, the logits once
        computed (softmax, log-probs, entropies) and the loss (``maspo.precision``).
        """
        return autocast(self.precision_mode, self.device)

    def step_seed(self, step: int) -> int:
        return self.config.train.seed * STEP_SEED_STRIDE + step

    def first_slot(self, step: int, index: int) -> int:
        """Where the candidates of ``step``'s draw ``index`` start in the training stream."""
        r = self.config.rollout
        draws = r.max_draws if r.filter_groups else 1
        return ((step - 1) * draws + index) * r.prompts_per_step

    def render(self, examples: list[Example]) -> list[str]:
        d = self.config.data
        return [render_prompt(self.tokenizer, ex.prompt, d.system_prompt, d.chat_template)
                for ex in examples]

    def draw(self, step: int, index: int, state: TrainState, slots: PromptSlots,
             clock: Clock) -> Drawn:
        """The ``index``-th batch of P prompts of ``step``, sampled G times each and scored
        (prompts and seed fixed by (train.seed, step, index): see ``maspo.trainer``)."""
        drawn = self.draw_batches(step, index, 1, slots, clock)[0]
        state.examples_seen += len(drawn.examples)
        return drawn

    def draw_batches(self, step: int, first: int, count: int, slots: PromptSlots,
                     clock: Clock) -> list[Drawn]:
        """``step``'s batches ``first`` .. ``first + count - 1`` (what ``draw`` gives for
        each), sampled in one call: batch i's prompts start at ``first_slot(step, i)`` and
        its groups draw their noise from (train.seed, step, i) as ``draw`` seeds them.
        Fewer (the first ones) when the call's key/value cache would hold more than
        ``CALL_POSITIONS`` positions, and one alone when a batch has fewer than
        ``SAME_BITS_ROWS`` rows (a call that small rounds otherwise than a bigger one)."""
        r = self.config.rollout
        per = r.prompts_per_step
        examples = slots.take(self.first_slot(step, first), count * per)
        prompts = self.render(examples)
        rows = per * r.group_size
        if count > 1:  # as many as keep the cache within CALL_POSITIONS (one at least)
            fit = rows_that_fit(self.tokenizer, prompts, r.max_new_tokens)
            count = max(1, min(count, fit // rows)) if rows >= SAME_BITS_ROWS else 1
            examples, prompts = examples[:count * per], prompts[:count * per]
        seeds = [s for i in range(first, first + count)
                 for s in group_seeds(derive_seed(self.config.train.seed, step, i), per)]
        with self.precision():
            rollout = self.sampler.generate(prompts, r.group_size, seed=seeds)
        clock.lap("generate")
        repeated = [ex for ex in examples for _ in range(r.group_size)]
        scores = self.scorer.score(repeated, rollout.texts, rollout.truncated.tolist())
        clock.lap("score")
        return split_drawn(Drawn(examples, rollout, scores), count)

    def draw_untied(self, step: int, state: TrainState, slots: PromptSlots, clock: Clock
                    ) -> tuple[Drawn | None, DrawStats]:
        """Dynamic sampling: draws until P groups have unequal rewards, or the bound; as
        many draws a call as the untied share (this step's, else the last step's) says
        are needed (``maspo.rollout.groups.batches_ahead``)."""
        r = self.config.rollout
        drawn, stats = draw_untied(
            lambda first, count: self.draw_batches(step, first, count, slots, clock),
            r.prompts_per_step, r.max_draws, state.untied_rate)
        state.examples_seen += stats.groups
        if stats.untied_rate is not None:
            state.untied_rate = stats.untied_rate
        if stats.kept < r.prompts_per_step:
            found = (f"step {step}: {stats.kept} of {r.prompts_per_step} groups had unequal "
                     f"rewards after {stats.draws} draws (rollout.max_draws)")
            if r.at_max_draws == "stop":
                raise TrainingStopped(f"stopped at {found}; raise rollout.max_draws or set "
                                      "rollout.at_max_draws=train")
            tqdm.write(f"maspo: {found}; training on "
                       + ("those" if stats.kept else "none: no update this step"))
        return drawn, stats

    def learn(self, learner: Learner, settings: UpdateSettings, step: int, state: TrainState,
              drawn: Drawn, clock: Clock) -> dict[str, Any]:
        """Advantages, the old policy's statistics and ``learner``'s K updates (``settings``)
        on ``drawn``."""
        c, rollout = self.config, drawn.rollout
        advantages = adv_lib.estimate(c.loss.advantage, drawn.rewards, rollout.group_size)
        advantages = advantages.to(self.device)  # (B,)
        clock.lap("score")
        seed = self.step_seed(step)
        order = scoring_order(rollout, advantages, settings, seed)
        deferred = deferred_rows(rollout, advantages, settings, seed)  # the first update's
        with self.precision():  # each row scored in the micro-batch its update will use
            old = old_policy_stats(learner, rollout, settings, order, deferred)
        if c.loss.entropy_advantage:
            advantages = adv_lib.entropy_advantage(advantages, old.entropy,
                                                   rollout.completion_mask)  # (B, T)
        clock.lap("old_logprobs")
        entropy = None if state.entropy_coef is None else EntropyCoef(
            state.entropy_coef, state.entropy_measured)
        with self.precision():
            update = policy_update(learner, rollout, old, advantages, settings,
                                   seed=seed, bad_streak=state.bad_streak,
                                   step=step, entropy=entropy)
        if settings.entropy_control is not None:  # (a fixed one stays in the config)
            state.entropy_coef = update.entropy.coef
            state.entropy_measured = update.entropy.measured
        state.bad_streak = update.bad_streak
        state.skipped_updates += update.skipped
        clock.lap("update")
        return {**rollout_metrics(drawn, advantages, old.entropy), **update_metrics(update)}
