"""The RLVR loop, top to bottom: sample -> score -> advantages -> old log-probs -> K updates.

Per step: take P prompts, ask the rollout engine (``maspo.rollout``) for G completions
each (softmax(logits / T), each prompt encoded once for its G samples, stop at EOS),
score them with each example's verifier, compute group advantages, compute the old
policy's log-probs once without gradients, then make K optimizer updates on K disjoint
mini-batches of the rollout (each holds whole prompt groups). From the second update on
the policy has moved, the ratio leaves 1 and the objective's gate/clip acts.
Each mini-batch is split into micro-batches whose gradients accumulate to exactly the
mini-batch gradient: the loss is aggregated with the mini-batch's token / completion
counts (``maspo.losses.aggregate``).
Log-probs run each distinct prompt once and its G completions on the shared key/value
cache (``maspo.logprobs.shared_prompt_logprobs``).

Deviations from a textbook PPO loop, all exact: completions whose advantage is 0 (groups
with equal rewards) are skipped in the updates when no KL/entropy term is on, since
every objective gives them zero loss and gradient; they still count in the mini-batch's
normalisation, so the update is unchanged. Randomness is drawn from seeds derived from
(train.seed, step), which makes a resumed run repeat a killed one bit for bit on CPU (on a
GPU, kernels are not bitwise deterministic: a resumed run is equivalent, not identical).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path
from typing import Any

import torch

from maspo import advantages as adv_lib
from maspo.checkpoint import load_checkpoint, save_checkpoint
from maspo.config import Config
from maspo.data import Example, render_prompt
from maspo.data.splits import data_splits
from maspo.devices import resolve_device
from maspo.errors import UserError
from maspo.evaluate import avg_accuracy, eval_settings, sample_and_score
from maspo.logprobs import TokenStats, shared_prompt_logprobs
from maspo.losses import aggregate, get_spec, k3_kl, policy_loss
from maspo.model_files import seal_model_dir
from maspo.models import LoraSettings, load_policy, resolve_model
from maspo.rewards import default_verifier
from maspo.rewards.scoring import Scorer
from maspo.rollout import LocalSampler, Rollout, RolloutEngine, SamplingSettings
from maspo.run import RunDir, RunLog, check_run_dir, default_output_dir

RATIO_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # logged per advantage sign (ratio/<sign>/qNN)
RATIO_RANGE = (0.5, 2.0)  # ratio/<sign>/outside: fraction of tokens whose ratio leaves it
EVAL_SEED_OFFSET = 1_000_003  # held-out sampling seeds differ from every training step's
STEP_SEED_STRIDE = 7_919  # step seeds: seed * stride + step (distinct across seeds too)


class TrainingStopped(RuntimeError):
    """The run cannot go on (repeated non-finite updates); the message says why."""


def sample_rows(prompts: int, group_size: int, count: int) -> list[int]:
    """``count`` rollout rows, the first completion of every prompt first, then the
    second, ...: a fixed, seed-free choice that covers as many prompts as it can."""
    total = prompts * group_size
    return [(k % prompts) * group_size + (k // prompts) for k in range(min(count, total))]


def ratio_quantiles(log_ratios: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """``ratio/<sign>/qNN``, ``min``, ``max``, ``outside`` of the token importance ratios
    r = pi / pi_old met in a step's updates, per advantage sign (pos: A > 0, neg: A < 0)."""
    out: dict[str, float] = {}
    low, high = RATIO_RANGE
    for sign, chunks in log_ratios.items():
        if not chunks:
            continue
        ratio = torch.cat(chunks).double().exp()  # (N,) every token with this sign
        values = torch.quantile(ratio, torch.tensor(RATIO_QUANTILES, dtype=torch.float64))
        for q, value in zip(RATIO_QUANTILES, values.tolist(), strict=True):
            out[f"ratio/{sign}/q{round(q * 100):02d}"] = value
        out[f"ratio/{sign}/min"] = ratio.min().item()
        out[f"ratio/{sign}/max"] = ratio.max().item()
        out[f"ratio/{sign}/outside"] = ((ratio < low) | (ratio > high)).double().mean().item()
    return out


# ---------------------------------------------------------------------------------------
# The trainer.


class Trainer:
    def __init__(self, config: Config, run: RunDir) -> None:
        self.config = config
        self.run = run
        c = config
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        torch.manual_seed(c.train.seed)
        self.splits = data_splits(c.data, c.train.seed)  # bad rows fail before the model loads
        lora = None
        if c.model.lora.enabled:
            lora = LoraSettings(rank=c.model.lora.rank, alpha=c.model.lora.alpha,
                                dropout=c.model.lora.dropout,
                                target_modules=c.model.lora.target_modules)
        self.model_path = resolve_model(c.model.path)
        self.device = resolve_device(c.train.device, "train.device")
        self.model, self.tokenizer = load_policy(self.model_path, device=self.device, lora=lora)
        self.ref = None
        if c.loss.kl_coef > 0:  # frozen copy of the initial policy for the k3 penalty
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=c.optim.lr, betas=c.optim.betas,
                                           weight_decay=c.optim.weight_decay)
        warmup = c.optim.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda u: min(1.0, (u + 1) / (warmup + 1)))
        self.scorer = Scorer(c.reward.functions, c.reward.format_weight,
                             c.reward.score_truncated)
        self.aggregation = c.loss.aggregation or get_spec(c.loss.name).aggregation
        self.eval_settings = eval_settings(config, n=c.train.eval_samples,
                                           seed=c.train.seed + EVAL_SEED_OFFSET)
        self.samples: list[dict[str, Any]] = []  # the last step's saved completions
        self.log_ratios: dict[str, list[torch.Tensor]] = {"pos": [], "neg": []}
        r = c.rollout
        self.sampler: RolloutEngine = LocalSampler(self.model, self.tokenizer, SamplingSettings(
            max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p))
        self.state: dict[str, Any] = {"examples_seen": 0, "bad_streak": 0,
                                      "skipped_updates": 0, "eval_before": None}

    # -- one rollout step ----------------------------------------------------------------

    def precision(self):
        """Autocast context for the forward passes: bf16 matmuls with ``train.precision=bf16``.

        Kept in fp32 either way: weights, gradients, optimizer state, the logits once
        computed (softmax, log-probs, entropies) and the loss.
        """
        if self.config.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step_seed(self, step: int) -> int:
        return self.config.train.seed * STEP_SEED_STRIDE + step

    def render(self, examples: list[Example]) -> list[str]:
        d = self.config.data
        return [render_prompt(self.tokenizer, ex.prompt, d.system_prompt, d.chat_template)
                for ex in examples]

    def train_step(self, step: int, stream) -> dict[str, Any]:
        c, r = self.config, self.config.rollout
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        torch.manual_seed(self.step_seed(step))  # any other draw this step (e.g. dropout)
        examples = [next(stream) for _ in range(r.prompts_per_step)]
        self.state["examples_seen"] += len(examples)
        with self.precision():
            rollout = self.sampler.generate(self.render(examples), r.group_size,
                                            seed=self.step_seed(step))
        times["generate"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        repeated = [ex for ex in examples for _ in range(r.group_size)]
        scores = self.scorer.score(repeated, rollout.texts, rollout.truncated.tolist())
        rewards = torch.tensor(scores.reward, dtype=torch.float32)  # (B,)
        advantages = adv_lib.estimate(c.loss.advantage, rewards, r.group_size)  # (B,)
        advantages = advantages.to(self.device)
        times["score"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with self.precision():
            old_logp, entropy, ref_logp = self.score_old(rollout)  # (B, T) each
        mask = rollout.completion_mask
        if c.loss.entropy_advantage:
            advantages = adv_lib.entropy_advantage(advantages, entropy, mask)  # (B, T)
        times["old_logprobs"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with self.precision():
            update_metrics = self.update(step, rollout, old_logp, ref_logp, advantages)
        times["update"] = time.perf_counter() - t0

        lengths = mask.sum(-1).float()
        self.samples = [
            {"step": step, "prompt": examples[i // r.group_size].prompt,
             "answer": examples[i // r.group_size].answer, "completion": rollout.texts[i],
             "reward": scores.reward[i], "correct": scores.correct[i],
             "truncated": bool(rollout.truncated[i]), "tokens": int(lengths[i].item())}
            for i in sample_rows(r.prompts_per_step, r.group_size, c.train.samples_per_step)]
        record: dict[str, Any] = {
            "step": step,
            "reward": rewards.mean().item(),
            "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
            "accuracy": sum(scores.correct) / len(scores.correct),
            "response_length": lengths.mean().item(),
            "truncated_frac": rollout.truncated.float().mean().item(),
            "entropy": ((entropy * mask).sum() / mask.sum().clamp(min=1)).item(),
            "zero_adv_frac": (advantages.reshape(len(rewards), -1) == 0).all(-1)
            .float().mean().item(),
            **update_metrics,
            "lr": self.scheduler.get_last_lr()[0],
            "examples_seen": self.state["examples_seen"],
        }
        for name, value in scores.parts.items():
            record[f"reward_{name}"] = sum(value) / len(value)
        stats = default_verifier().stats  # cumulative; failures score 0 and are counted
        record["verifier/timeouts"] = stats.timeouts
        record["verifier/errors"] = stats.errors
        record.update({f"time/{k}": v for k, v in times.items()})
        record["time/step"] = sum(times.values())
        return record

    @torch.no_grad()
    def score_old(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Old-policy log-probs and entropies (and reference log-probs), micro-batched."""
        c = self.config
        logps, ents, refs = [], [], []
        for rows in torch.arange(len(rollout.texts)).split(c.optim.micro_batch_size):
            stats = self.logprobs(self.model, rollout, rows, with_entropy=True)
            logps.append(self.pad_to(stats.logprobs, rollout))
            ents.append(self.pad_to(stats.entropy, rollout))
            if self.ref is not None:
                refs.append(self.pad_to(self.logprobs(self.ref, rollout, rows).logprobs, rollout))
        ref_logp = torch.cat(refs) if refs else None
        return torch.cat(logps), torch.cat(ents), ref_logp

    def logprobs(self, model, rollout: Rollout, rows: torch.Tensor,
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
            prompt_index.to(device), temperature=self.config.rollout.temperature,
            with_entropy=with_entropy, chunk_size=self.config.model.logprob_chunk)

    @staticmethod
    def pad_to(values: torch.Tensor, rollout: Rollout) -> torch.Tensor:
        width = rollout.completion_mask.shape[1]
        return torch.nn.functional.pad(values, (0, width - values.shape[1]))

    def update(self, step: int, rollout: Rollout, old_logp: torch.Tensor,
               ref_logp: torch.Tensor | None, advantages: torch.Tensor) -> dict[str, float]:
        """K optimizer updates on K disjoint mini-batches, each micro-batched exactly."""
        c = self.config
        g = c.rollout.group_size
        prompts = rollout.completion_mask.shape[0] // g
        gen = torch.Generator().manual_seed(self.step_seed(step))
        # mini-batches of whole groups (all G completions of a prompt together), prompts
        # shuffled: a group's rows share their prompt, which the log-prob pass exploits
        order = torch.randperm(prompts, generator=gen).tensor_split(c.optim.updates_per_step)
        minibatches = [(p[:, None] * g + torch.arange(g)).reshape(-1) for p in order]
        totals: dict[str, float] = {}
        weights: dict[str, float] = {}
        losses, norms, skipped = [], [], 0
        self.log_ratios = {"pos": [], "neg": []}
        self.model.train()
        for minibatch in minibatches:
            loss_sum, active = self.backward_minibatch(rollout, minibatch, old_logp, ref_logp,
                                                       advantages, totals, weights)
            norm = torch.nn.utils.clip_grad_norm_(self.params, c.optim.grad_clip or math.inf)
            if len(active) and not (torch.isfinite(loss_sum) and torch.isfinite(norm)):
                skipped += 1  # leave the weights as they were
                self.state["bad_streak"] += 1
                self.state["skipped_updates"] += 1
                self.optimizer.zero_grad(set_to_none=True)
                if self.state["bad_streak"] >= c.optim.max_bad_updates:
                    raise TrainingStopped(
                        f"stopped at step {step}: {self.state['bad_streak']} consecutive "
                        "updates had a non-finite loss or gradient; lower optim.lr or "
                        "check the reward and objective parameters")
                continue
            if len(active):  # (a mini-batch of zero-advantage rows only: nothing to do)
                self.state["bad_streak"] = 0
                self.optimizer.step()
                self.scheduler.step()
                losses.append(loss_sum.item())
                norms.append(norm.item())
            self.optimizer.zero_grad(set_to_none=True)
        # a group no token fell into this step (e.g. no head token with A < 0) is omitted
        out = {f"obj/{k}": totals[k] / weights[k] for k in totals if weights[k]}
        out["loss"] = sum(losses) / len(losses) if losses else 0.0
        out["grad_norm"] = sum(norms) / len(norms) if norms else 0.0
        out["skipped_updates"] = skipped
        out.update(ratio_quantiles(self.log_ratios))
        return out

    def backward_minibatch(self, rollout: Rollout, minibatch: torch.Tensor,
                           old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                           advantages: torch.Tensor, totals: dict[str, float],
                           weights: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Accumulate the mini-batch's gradient micro-batch by micro-batch.

        Returns the mini-batch loss and the rows that were computed (token-weighted
        objective metrics are added into ``totals`` / ``weights``).
        """
        c = self.config
        mask = rollout.completion_mask
        counts = {"num_tokens": mask[minibatch].sum(),
                  "num_seqs": (mask[minibatch].sum(-1) > 0).sum(),
                  "norm_len": c.rollout.max_new_tokens}
        active = minibatch
        if not (c.loss.kl_coef > 0 or c.loss.entropy_coef > 0):
            # zero-advantage rows contribute exactly nothing: skip them (counts keep them)
            row_adv = advantages.reshape(mask.shape[0], -1)  # (B, 1) or (B, T)
            active = minibatch[(row_adv[minibatch] != 0).any(-1).cpu()]
        loss_sum = torch.zeros((), device=self.device)
        for rows in active.split(c.optim.micro_batch_size) if len(active) else ():
            loss, metrics = self.micro_loss(rollout, rows, old_logp, ref_logp, advantages,
                                            counts)
            loss.backward()
            loss_sum += loss.detach()
            for key, (value, count) in metrics.items():
                if count is None:  # a maximum
                    totals[key] = max(totals.get(key, -math.inf), value)
                    weights[key] = 1.0
                else:  # a mean over `count` tokens: combine exactly across micro-batches
                    totals[key] = totals.get(key, 0.0) + value * count
                    weights[key] = weights.get(key, 0.0) + count
        return loss_sum, active

    def micro_loss(self, rollout: Rollout, rows: torch.Tensor, old_logp: torch.Tensor,
                   ref_logp: torch.Tensor | None, advantages: torch.Tensor,
                   counts: dict[str, Any]
                   ) -> tuple[torch.Tensor, dict[str, tuple[float, float | None]]]:
        """Loss of one micro-batch and its metrics as (value, token count or None for a max)."""
        c = self.config
        need_entropy = c.loss.entropy_coef > 0
        stats = self.logprobs(self.model, rollout, rows, with_entropy=need_entropy)
        t = stats.logprobs.shape[1]
        mask = rollout.completion_mask[rows, :t]  # (b, t)
        adv = advantages[rows] if advantages.dim() == 1 else advantages[rows, :t]
        out = policy_loss(c.loss.name, stats.logprobs, old_logp[rows, :t], adv, mask,
                          **c.loss.params)
        loss = aggregate(out.per_token, mask, self.aggregation, **counts)
        log_ratio = stats.logprobs.detach() - old_logp[rows, :t]  # (b, t)
        sign = adv.expand_as(mask) if adv.dim() == 2 else adv[:, None].expand_as(mask)
        self.log_ratios["pos"].append(log_ratio[mask & (sign > 0)].cpu())
        self.log_ratios["neg"].append(log_ratio[mask & (sign < 0)].cpu())
        keys = list(out.metrics)
        values = torch.stack([out.metrics[k].float() for k in keys]).tolist() if keys else []
        metrics = {}
        for key, value in zip(keys, values, strict=True):
            count = out.metric_count(key)
            metrics[key] = (value, None if count is None else float(count))
        n_tok = float(mask.sum().item())
        if self.ref is not None:
            kl = k3_kl(stats.logprobs, ref_logp[rows, :t])  # (b, t), clamped as verl does
            kl_loss = aggregate(kl, mask, self.aggregation, **counts)
            loss = loss + c.loss.kl_coef * kl_loss
            metrics["kl_ref"] = ((kl * mask).sum().item() / max(n_tok, 1.0), n_tok)
        if need_entropy:
            loss = loss - c.loss.entropy_coef * aggregate(stats.entropy, mask, self.aggregation,
                                                          **counts)
        return loss, metrics

    # -- evaluation and checkpoints -----------------------------------------------------

    def evaluate(self) -> float:
        results = sample_and_score(self.model, self.tokenizer, self.splits.heldout,
                                   self.eval_settings, self.scorer)
        return avg_accuracy(results)

    def save(self, step: int) -> None:
        save_checkpoint(self.run.checkpoints, step, self.model, self.optimizer,
                        self.scheduler, self.state, keep=self.config.train.keep_checkpoints)


def train(config: Config, *, resume: bool = False, progress: bool = True,
          output_dir: str | Path | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns the summary it also writes to the run folder."""
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    from maspo.plots import plot_run

    hf_logging.disable_progress_bar()
    if output_dir is None and config.train.output_dir is None:
        if resume:
            raise UserError("--resume needs the run directory: set train.output_dir")
        output_dir = default_output_dir(config)
    run = check_run_dir(config, Path(output_dir or config.train.output_dir), resume)
    checkpoint = run.latest_checkpoint() if resume else None  # verified
    trainer = Trainer(config, run)
    start = 0
    if checkpoint is not None:
        trainer.state = load_checkpoint(checkpoint, trainer.model, trainer.optimizer,
                                        trainer.scheduler, verify=False)
        start = trainer.state.pop("step")
        for key in ("scheduler", "optimizer_groups", "python_rng"):
            trainer.state.pop(key, None)
    run.write_config(config)  # only now: a failed start leaves nothing behind
    dtype = next(trainer.model.parameters()).dtype
    autocast = ", bf16 autocast" if config.train.precision == "bf16" else ""
    print(f"maspo: training {config.loss.name} on {trainer.device} "
          f"({str(dtype).removeprefix('torch.')} weights{autocast})"
          + (f", resuming from {checkpoint.name}" if checkpoint is not None else ""))
    # on resume, drop what the killed run logged after its last checkpoint (all of it if
    # it died before the first one: the run then starts over)
    log = RunLog(run, (start if checkpoint is not None else -1) if resume else None)
    stream = trainer.splits.train_stream(skip=trainer.state["examples_seen"])

    steps = config.train.steps
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train", unit="step",
               dynamic_ncols=True)
    try:
        if start == 0:
            t0 = time.perf_counter()
            acc = trainer.evaluate()
            trainer.state["eval_before"] = acc
            log.write({"step": 0, "eval/accuracy": acc,
                       "time/eval": time.perf_counter() - t0})
            bar.set_postfix(eval_acc=f"{acc:.3f}")
        for step in range(start + 1, steps + 1):
            record = trainer.train_step(step, stream)
            every = config.train.eval_every
            if step == steps or (every and step % every == 0):
                t0 = time.perf_counter()
                record["eval/accuracy"] = trainer.evaluate()
                record["time/eval"] = time.perf_counter() - t0
            log.write(record, trainer.samples)
            post = {"reward": f"{record['reward']:.3f}", "acc": f"{record['accuracy']:.3f}"}
            if "eval/accuracy" in record:
                post["eval_acc"] = f"{record['eval/accuracy']:.3f}"
            bar.set_postfix(post)
            bar.update(1)
            save_every = config.train.save_every
            if step == steps or (save_every and step % save_every == 0):
                trainer.save(step)
    finally:
        bar.close()
        log.close()

    records = run.read_metrics()
    final = next((r["eval/accuracy"] for r in reversed(records) if "eval/accuracy" in r), None)
    trainer.model.save_pretrained(run.final_model, safe_serialization=True)
    trainer.tokenizer.save_pretrained(run.final_model)
    seal_model_dir(run.final_model)  # checksums: altered bytes are named when it is loaded
    summary = {
        "objective": config.loss.name,
        "steps": steps,
        "eval_accuracy_before": trainer.state["eval_before"],
        "eval_accuracy_after": final,
        "eval_prompts": len(trainer.splits.heldout),
        "eval_samples_per_prompt": config.train.eval_samples,
        "skipped_updates": trainer.state["skipped_updates"],
        "train_time_s": sum(r.get("time/step", 0.0) + r.get("time/eval", 0.0)
                            for r in records),
        "run_dir": str(run.root),
    }
    run.write_summary(summary)
    plot_run([run.root], run.curves)
    return summary
