"""Old-policy statistics and the K-mini-batch policy update, as functions of what they use.

``old_policy_stats`` scores a rollout once without gradients: the old policy's token
log-probs and entropies, and the reference policy's log-probs when a KL term is on. In
``scoring_order`` it scores each row in the very micro-batch the update computes it in,
so both passes run the same kernels on the same shapes and the first ratio is exactly 1.
The rows the first update computes need no pass of their own (``deferred_rows``): the
policy has not moved before that update, so its forward pass gives pi_old's log-probs and
entropies, which it writes into the old statistics (``OldPolicyStats.fill``) before its
loss reads them. With K updates per rollout that skips about 1/K of the old pass (all of
it for K = 1) and changes no bit: the separate pass would have run the same kernels on the
same micro-batch.
``policy_update`` then makes K optimizer updates on K disjoint mini-batches of the rollout,
each holding whole prompt groups, prompts shuffled by the step's seed. From the second
update on the policy has moved, the ratio leaves 1 and the objective's gate/clip acts.
Each mini-batch is split into micro-batches whose gradients accumulate to exactly the
mini-batch gradient: the loss is aggregated with the mini-batch's token / completion
counts (``maspo.losses.aggregate``). Log-probs run each distinct prompt once and its G
completions on the shared key/value cache (``maspo.logprobs.shared_prompt_logprobs``).

Deviations from a textbook PPO update, all exact: completions whose advantage is 0 (groups
with equal rewards) are skipped when no KL/entropy term is on, since every objective gives
them zero loss and gradient; they still count in the mini-batch's normalisation, so the
update is unchanged. An update whose loss or gradient is not finite is skipped (the
weights stay as they were); ``max_bad_updates`` of them in a row stop the run.

Dimensions: B completions, T completion tokens, b / t those of a micro-batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from maspo.config import Config, OptimConfig
from maspo.entropy_control import EntropyCoef, EntropyTarget
from maspo.logprobs import TokenStats, shared_prompt_logprobs
from maspo.losses import aggregate, get_spec, k3_kl, policy_loss
from maspo.rollout import Rollout

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel (3-5x the loop on CPU)


class TrainingStopped(RuntimeError):
    """The run cannot go on (repeated non-finite updates); the message says why."""


@dataclass(frozen=True)
class UpdateSettings:
    """What the update reads from a run's config, read once."""

    objective: str  # registered loss (``maspo.losses``)
    params: dict[str, Any]  # its parameters
    aggregation: str  # how per-token losses reduce (``maspo.losses.aggregate``)
    kl_coef: float  # k3 KL penalty to the reference policy (0: none)
    entropy_coef: float  # entropy bonus (0: none); with entropy_control its starting value
    entropy_control: EntropyTarget | None  # adaptive entropy bonus (None: fixed coefficient)
    updates_per_step: int  # K mini-batches, one optimizer update each
    micro_batch_size: int  # completions per forward/backward
    grad_clip: float  # max global gradient norm (0: no clipping)
    max_bad_updates: int  # consecutive non-finite updates that stop the run
    temperature: float  # the sampling temperature the log-probs are taken at
    max_new_tokens: int  # completion cap (the fixed normaliser of some aggregations)
    logprob_chunk: int | None  # tokens per lm_head chunk (None: maspo.logprobs' default)
    defer_first: bool = True  # the first update scores its rows for pi_old (``deferred_rows``)

    @classmethod
    def of(cls, config: Config) -> UpdateSettings:
        c = config
        return cls(objective=c.loss.name, params=c.loss.params,
                   aggregation=c.loss.aggregation or get_spec(c.loss.name).aggregation,
                   kl_coef=c.loss.kl_coef, entropy_coef=c.loss.entropy_coef,
                   entropy_control=None if c.loss.entropy_target is None else EntropyTarget(
                       c.loss.entropy_target, c.loss.entropy_coef_delta,
                       c.loss.entropy_coef_min, c.loss.entropy_coef_max),
                   updates_per_step=c.optim.updates_per_step,
                   micro_batch_size=c.optim.micro_batch_size, grad_clip=c.optim.grad_clip,
                   max_bad_updates=c.optim.max_bad_updates,
                   temperature=c.rollout.temperature, max_new_tokens=c.rollout.max_new_tokens,
                   logprob_chunk=c.model.logprob_chunk,
                   defer_first=not c.loss.entropy_advantage)  # that reads pi_old's entropies

    @property
    def with_entropy(self) -> bool:
        """Whether the update computes token entropies (an entropy bonus is on)."""
        return self.entropy_coef > 0 or self.entropy_control is not None

    @property
    def scores_every_row(self) -> bool:
        """Whether rows with advantage 0 still have a loss (a KL or entropy term)."""
        return self.kl_coef > 0 or self.with_entropy


@dataclass
class Learner:
    """The policy being trained and what moves it."""

    model: torch.nn.Module
    ref: torch.nn.Module | None  # frozen initial policy for the KL term (None: no KL)
    params: list[torch.nn.Parameter]  # the trainable weights
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device

    @classmethod
    def create(cls, model: torch.nn.Module, ref: torch.nn.Module | None, optim: OptimConfig,
               device: torch.device, warmup_steps: int) -> Learner:
        """AdamW over ``model``'s trainable weights (``optim``), its rate ramped linearly
        over the first ``warmup_steps`` updates (0: constant from the first).

        ``optim.fused`` takes torch's fused kernel where the device has one
        (``FUSED_ADAMW_DEVICES``), else torch's per-tensor loop. The two round the last
        bit differently, so a run resumes with the kind it started with (the checkpoint
        keeps it)."""
        params = [p for p in model.parameters() if p.requires_grad]
        fused = optim.fused and device.type in FUSED_ADAMW_DEVICES
        optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=optim.betas,
                                      weight_decay=optim.weight_decay,
                                      fused=True if fused else None)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda u: min(1.0, (u + 1) / (warmup_steps + 1)))
        return cls(model, ref, params, optimizer, scheduler, device)


# ---------------------------------------------------------------------------------------
# Log-probs of a rollout's completions.


def completion_logprobs(model, rollout: Rollout, rows: Tensor, settings: UpdateSettings,
                        with_entropy: bool = False) -> TokenStats:
    """(b, t) log-probs (and entropies) of the completions ``rows`` under ``model``.

    Each distinct prompt among the rows runs once (``shared_prompt_logprobs``): with G
    completions per prompt that removes most of the compute for short completions.
    Columns that are padding in every row are trimmed off; t is the longest completion.
    """
    s, g = rollout.prompt_len, rollout.group_size
    groups = torch.div(rows, g, rounding_mode="floor")  # (b,) prompt of each row
    unique, prompt_index = torch.unique(groups, return_inverse=True)  # (u,), (b,)
    prompt_mask = rollout.attention_mask[unique * g, :s]  # (u, S)
    lead = int((prompt_mask.sum(0) == 0).long().cumprod(0).sum().item())  # pad columns
    t = max(int(rollout.completion_mask[rows].sum(-1).max().item()), 1)
    device = rollout.input_ids.device
    return shared_prompt_logprobs(
        model, rollout.input_ids[unique * g, lead:s], prompt_mask[:, lead:],
        rollout.input_ids[rows, s:s + t], rollout.attention_mask[rows, s:s + t],
        prompt_index.to(device), temperature=settings.temperature,
        with_entropy=with_entropy, chunk_size=settings.logprob_chunk)


@dataclass
class OldPolicyStats:
    """The rollout scored once, before any update of this step (its ``deferred`` rows by
    the first update's own forward pass, before its optimizer step)."""

    logprobs: Tensor  # (B, T) log pi_old of each completion token (0 on padding)
    entropy: Tensor  # (B, T) entropy of pi_old's next-token distribution
    ref_logprobs: Tensor | None  # (B, T) log pi_ref, when a KL term is on
    deferred: Tensor | None = None  # (B,) bool: rows not scored yet (None: none)

    def fill(self, rows: Tensor, stats: TokenStats) -> None:
        """Write ``stats`` (b, t), the old policy's log-probs and entropies of the
        deferred ``rows``, in; they are scored then."""
        if self.deferred is None or not bool(self.deferred[rows].all()):
            raise RuntimeError("only rows deferred to the first update can be filled in")
        t = stats.logprobs.shape[1]
        self.logprobs[rows, :t] = stats.logprobs.detach()
        self.entropy[rows, :t] = stats.entropy.detach()
        self.deferred[rows] = False

    def pending(self, rows: Tensor) -> bool:
        """Whether ``rows`` (a micro-batch) are deferred rows the caller must fill in."""
        return self.deferred is not None and bool(self.deferred[rows].any())


def _pad_to(values: Tensor, width: int) -> Tensor:
    return torch.nn.functional.pad(values, (0, width - values.shape[1]))


@torch.no_grad()
def rollout_logprobs(model, rollout: Rollout, settings: UpdateSettings,
                     order: Sequence[Tensor] | None = None,
                     with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """(B, T) log-probs (and entropies, else None) of every completion of ``rollout``
    under ``model``, micro-batch by micro-batch in ``order`` (row indices; None:
    ``micro_batch_size`` rows at a time)."""
    batch, width = rollout.completion_mask.shape
    if order is None:
        order = torch.arange(batch).split(settings.micro_batch_size)
    device = rollout.completion_mask.device
    logps = torch.zeros(batch, width, device=device)
    ents = torch.zeros(batch, width, device=device) if with_entropy else None
    for rows in order:
        stats = completion_logprobs(model, rollout, rows, settings, with_entropy=with_entropy)
        logps[rows] = _pad_to(stats.logprobs, width)
        if ents is not None:
            ents[rows] = _pad_to(stats.entropy, width)
    return logps, ents


def old_policy_stats(learner: Learner, rollout: Rollout, settings: UpdateSettings,
                     order: Sequence[Tensor] | None = None,
                     deferred: Tensor | None = None) -> OldPolicyStats:
    """Old-policy log-probs and entropies (and reference log-probs), micro-batch by
    micro-batch in ``order`` (row indices; None: ``micro_batch_size`` rows at a time).

    With the ``scoring_order`` of a step, each row the update computes is scored here in
    the very micro-batch the first update computes it in: the two passes run the same
    kernels on the same shapes, so the first ratio is exactly 1 whatever the kernels do.
    ``deferred`` ((B,) bool, from ``deferred_rows``) marks the rows whose policy
    statistics are left to the first update (``policy_update`` fills them in); a
    micro-batch of ``order`` holds only such rows or none. Reference log-probs cover
    every row.
    """
    policy_order = order
    if deferred is not None:
        if order is None:
            raise ValueError("deferred rows need the step's scoring order")
        if any(bool(deferred[rows].any()) != bool(deferred[rows].all()) for rows in order):
            raise ValueError("a scoring micro-batch mixes deferred rows with others")
        policy_order = [rows for rows in order if not bool(deferred[rows].any())]
    logps, ents = rollout_logprobs(learner.model, rollout, settings, policy_order,
                                   with_entropy=True)
    refs = None if learner.ref is None else rollout_logprobs(learner.ref, rollout, settings,
                                                             order)[0]
    return OldPolicyStats(logps, ents, refs, None if deferred is None else deferred.clone())


def minibatches(rollout: Rollout, settings: UpdateSettings, seed: int) -> list[Tensor]:
    """The K disjoint mini-batches of a step: whole groups (a group's rows share their
    prompt, which the log-prob pass exploits), prompts shuffled by ``seed``."""
    g = rollout.group_size
    prompts = rollout.completion_mask.shape[0] // g
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(prompts, generator=gen).tensor_split(settings.updates_per_step)
    return [(p[:, None] * g + torch.arange(g)).reshape(-1) for p in order]


def active_rows(rollout: Rollout, minibatch: Tensor, advantages: Tensor,
                settings: UpdateSettings) -> Tensor:
    """The rows of ``minibatch`` its update computes: all, or with no KL / entropy term
    only those with a non-zero advantage (the others contribute exactly nothing)."""
    if settings.scores_every_row:
        return minibatch
    row_adv = advantages.reshape(rollout.completion_mask.shape[0], -1)  # (B, 1) or (B, T)
    return minibatch[(row_adv[minibatch] != 0).any(-1).cpu()]


def deferred_rows(rollout: Rollout, advantages: Tensor, settings: UpdateSettings,
                  seed: int) -> Tensor | None:
    """(B,) bool: the rows the step's first update (``policy_update`` with ``seed``)
    computes, whose old-policy statistics its own forward pass gives (None: with
    ``settings.defer_first`` off, when the advantages need the old entropies first)."""
    if not settings.defer_first:
        return None
    deferred = torch.zeros(rollout.completion_mask.shape[0], dtype=torch.bool)
    deferred[active_rows(rollout, minibatches(rollout, settings, seed)[0], advantages,
                         settings)] = True
    return deferred


def scoring_order(rollout: Rollout, advantages: Tensor, settings: UpdateSettings,
                  seed: int) -> list[Tensor]:
    """Every row once, in micro-batches: those of the step's updates (``policy_update``
    with ``seed``) first, then the rows no update computes."""
    order, done = [], torch.zeros(rollout.completion_mask.shape[0], dtype=torch.bool)
    for minibatch in minibatches(rollout, settings, seed):
        for rows in active_rows(rollout, minibatch, advantages, settings).split(
                settings.micro_batch_size):
            order.append(rows)
            done[rows] = True
    order += torch.nonzero(~done).squeeze(-1).split(settings.micro_batch_size)
    return [rows for rows in order if len(rows)]


# ---------------------------------------------------------------------------------------
# The loss of a micro-batch, the gradient of a mini-batch, the K updates of a step.


@dataclass
class TokenRecord:
    """Completion tokens an update computed, flattened in row order, detached, on the CPU."""

    log_ratio: Tensor  # (N,) log pi / pi_old
    advantage: Tensor  # (N,) the token's advantage
    weight: Tensor  # (N,) the objective's gradient weight w

    @classmethod
    def cat(cls, records: Sequence[TokenRecord]) -> TokenRecord:
        """The tokens of ``records`` one after another (none: empty tensors)."""
        if not records:
            return cls(torch.zeros(0), torch.zeros(0), torch.zeros(0))
        return cls(*(torch.cat([getattr(r, key) for r in records])
                     for key in ("log_ratio", "advantage", "weight")))


Metrics = dict[str, tuple[float, float | None]]  # name -> (value, token count; None: a max)


@dataclass
class MicroLoss:
    """One micro-batch's loss and what it measured."""

    loss: Tensor  # () its share of the mini-batch loss
    metrics: Metrics  # the objective's metrics (and the KL term's)
    tokens: TokenRecord  # its completion tokens
    entropy: tuple[Tensor, Tensor] | None  # () entropy summed over its tokens, () their count


def micro_loss(model, rollout: Rollout, rows: Tensor, old: OldPolicyStats, advantages: Tensor,
               counts: dict[str, Any], settings: UpdateSettings,
               entropy_coef: float | None = None) -> MicroLoss:
    """The objective (plus KL and entropy terms) on completions ``rows`` of a mini-batch
    whose ``counts`` normalise it; the entropy bonus weighs ``entropy_coef`` (None: the
    settings' fixed one)."""
    s = settings
    coef = s.entropy_coef if entropy_coef is None else entropy_coef
    fill = old.pending(rows)  # the first update: its pass gives pi_old's statistics too
    stats = completion_logprobs(model, rollout, rows, s, with_entropy=s.with_entropy or fill)
    if fill:
        old.fill(rows, stats)
    t = stats.logprobs.shape[1]
    mask = rollout.completion_mask[rows, :t]  # (b, t)
    old_logp = old.logprobs[rows, :t]  # (b, t)
    adv = advantages[rows] if advantages.dim() == 1 else advantages[rows, :t]
    out = policy_loss(s.objective, stats.logprobs, old_logp, adv, mask, **s.params)
    loss = aggregate(out.per_token, mask, s.aggregation, **counts)
    log_ratio = stats.logprobs.detach() - old_logp  # (b, t)
    token_adv = adv.expand_as(mask) if adv.dim() == 2 else adv[:, None].expand_as(mask)
    tokens = TokenRecord(log_ratio[mask].cpu(), token_adv[mask].cpu(),
                         out.weight.detach()[mask].cpu())
    keys = list(out.metrics)
    values = torch.stack([out.metrics[k].float() for k in keys]).tolist() if keys else []
    metrics: Metrics = {}
    for key, value in zip(keys, values, strict=True):
        count = out.metric_count(key)
        metrics[key] = (value, None if count is None else float(count))
    n_tok = float(mask.sum().item())
    if old.ref_logprobs is not None:
        kl = k3_kl(stats.logprobs, old.ref_logprobs[rows, :t])  # (b, t), clamped as verl does
        loss = loss + s.kl_coef * aggregate(kl, mask, s.aggregation, **counts)
        metrics["kl_ref"] = ((kl * mask).sum().item() / max(n_tok, 1.0), n_tok)
    entropy = None
    if s.with_entropy:
        entropy = ((stats.entropy.detach() * mask).sum(), mask.sum())
    if coef > 0:
        loss = loss - coef * aggregate(stats.entropy, mask, s.aggregation, **counts)
    return MicroLoss(loss, metrics, tokens, entropy)


@dataclass
class MinibatchGradient:
    """A mini-batch's accumulated gradient (left in the parameters' ``.grad``)."""

    loss: Tensor  # () the mini-batch loss
    active: Tensor  # (n,) the rows that were computed
    metrics: list[Metrics] = field(default_factory=list)  # each micro-batch's, in order
    tokens: list[TokenRecord] = field(default_factory=list)  # each micro-batch's, in order
    entropy: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # (sum, count) each

    def mean_entropy(self) -> float | None:
        """Mean token entropy of the computed rows under the policy before this update
        (None when entropies were not computed)."""
        if not self.entropy:
            return None
        sums, counts = (torch.stack(list(column)).sum() for column in zip(*self.entropy))
        return (sums / counts.clamp(min=1)).item()


def minibatch_backward(learner: Learner, rollout: Rollout, minibatch: Tensor,
                       old: OldPolicyStats, advantages: Tensor,
                       settings: UpdateSettings,
                       entropy_coef: float | None = None) -> MinibatchGradient:
    """Accumulate the mini-batch's gradient micro-batch by micro-batch (``entropy_coef``:
    the bonus's coefficient, None: the settings' fixed one)."""
    mask = rollout.completion_mask
    counts = {"num_tokens": mask[minibatch].sum(),
              "num_seqs": (mask[minibatch].sum(-1) > 0).sum(),
              "norm_len": settings.max_new_tokens}
    active = active_rows(rollout, minibatch, advantages, settings)  # counts keep the rest
    result = MinibatchGradient(torch.zeros((), device=learner.device), active)
    for rows in active.split(settings.micro_batch_size) if len(active) else ():
        micro = micro_loss(learner.model, rollout, rows, old, advantages, counts, settings,
                           entropy_coef)
        micro.loss.backward()
        result.loss += micro.loss.detach()
        result.metrics.append(micro.metrics)
        result.tokens.append(micro.tokens)
        if micro.entropy is not None:
            result.entropy.append(micro.entropy)
    return result


@dataclass
class UpdateResult:
    """What a step's K updates computed (``maspo.step_log.update_metrics`` logs it)."""

    losses: list[float]  # the loss of each update made (skipped ones left out)
    grad_norms: list[float]  # the gradient norm of each update made, before clipping
    skipped: int  # updates skipped for a non-finite loss or gradient
    bad_streak: int  # non-finite updates in a row, this step's included
    metrics: list[Metrics]  # each micro-batch's, in order
    tokens: list[TokenRecord]  # each mini-batch's computed tokens, in update order
    entropy: EntropyCoef  # the entropy bonus's state after the K updates
    entropy_control: bool = False  # whether a target moved it (then it is logged)


def policy_update(learner: Learner, rollout: Rollout, old: OldPolicyStats, advantages: Tensor,
                  settings: UpdateSettings, *, seed: int, bad_streak: int,
                  step: int, entropy: EntropyCoef | None = None) -> UpdateResult:
    """K optimizer updates on K disjoint mini-batches, each micro-batched exactly.

    ``bad_streak`` counts the non-finite updates in a row before this step; reaching
    ``max_bad_updates`` raises ``TrainingStopped`` (naming ``step``). ``entropy`` is the
    entropy bonus's state before the step (None: the settings' starting coefficient); with
    ``settings.entropy_control`` each optimizer update moves it (``maspo.entropy_control``).
    """
    control = settings.entropy_control
    result = UpdateResult([], [], 0, bad_streak, [], [],
                          entropy if entropy is not None else EntropyCoef(settings.entropy_coef),
                          control is not None)
    learner.model.train()
    for minibatch in minibatches(rollout, settings, seed):
        grad = minibatch_backward(learner, rollout, minibatch, old, advantages, settings,
                                  result.entropy.applied(control))
        if old.deferred is not None and bool(old.deferred.any()):
            raise RuntimeError("the first update left rows deferred to it unscored; they "
                               "cannot be scored at the old policy once it moves")
        result.metrics += grad.metrics
        result.tokens.append(TokenRecord.cat(grad.tokens))
        norm = torch.nn.utils.clip_grad_norm_(learner.params, settings.grad_clip or math.inf)
        if len(grad.active) and not (torch.isfinite(grad.loss) and torch.isfinite(norm)):
            result.skipped += 1  # leave the weights as they were
            result.bad_streak += 1
            learner.optimizer.zero_grad(set_to_none=True)
            if result.bad_streak >= settings.max_bad_updates:
                raise TrainingStopped(
                    f"stopped at step {step}: {result.bad_streak} consecutive updates had a "
                    "non-finite loss or gradient; lower optim.lr or check the reward and "
                    "objective parameters")
            continue
        if len(grad.active):  # (a mini-batch of zero-advantage rows only: nothing to do)
            result.bad_streak = 0
            learner.optimizer.step()
            torch.clear_autocast_cache()  # its bf16 copies of the old weights are stale now
            learner.scheduler.step()
            result.losses.append(grad.loss.item())
            result.grad_norms.append(norm.item())
            measured = grad.mean_entropy() if control is not None else None
            if measured is not None:
                result.entropy = result.entropy.after_update(control, measured)
        learner.optimizer.zero_grad(set_to_none=True)
    return result
