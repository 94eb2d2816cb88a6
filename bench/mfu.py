"""maspo steps timed per phase, with each phase's model FLOPs and its utilisation of the
matmul throughput measured on the model's own shapes (used by bench/trainer.py, gpu.py).

Not a test. A step's rollout is recorded through the trainer's rollout engine and its
rewards read from the step's saved completions (every row is saved), so the FLOPs of
sampling, old log-probs and the update are counted by ``maspo.flops`` on exactly the
tokens the step processed: real tokens, each prompt once per group, the update on the
rows with a non-zero advantage.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from maspo import advantages as adv_lib
from maspo.config import Config
from maspo.flops import ModelShape, matmul_throughput, rollout_flops, update_flops
from maspo.parts import TrainState
from maspo.rollout import Rollout
from maspo.run import prepare_run_dir
from maspo.step_log import saved_rows
from maspo.trainer import Trainer
from maspo.update import deferred_rows

PHASES = (("generate", "sampling"), ("old_logprobs", "old log-probs"), ("update", "updates"))
GIGA = 1e9


@dataclass
class Recording:
    """A rollout engine that keeps the last rollout the trainer asked it for."""

    inner: object
    last: Rollout | None = None

    def generate(self, prompts: list[str], n: int, *, seed: int) -> Rollout:
        self.last = self.inner.generate(prompts, n, seed=seed)
        return self.last


@dataclass
class Steps:
    """Timed steps of one trainer: per-step phase times and model FLOPs."""

    times: list[dict[str, float]] = field(default_factory=list)  # time/<phase> records
    flops: list[dict[str, int]] = field(default_factory=list)  # phase -> model FLOPs
    cpu: list[float] = field(default_factory=list)  # process CPU seconds per step
    shape: ModelShape | None = None

    def extend(self, other: Steps) -> None:
        self.times += other.times
        self.flops += other.flops
        self.cpu += other.cpu
        self.shape = other.shape

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.times)

    def achieved(self, phase: str) -> float:
        """FLOP/s of a phase over all steps (total FLOPs / total time)."""
        return (sum(f[phase] for f in self.flops)
                / sum(r[f"time/{phase}"] for r in self.times))

    def cpu_share(self) -> float:
        """CPU time / wall time of the steps (below 1: other processes held the cores)."""
        return sum(self.cpu) / sum(r["time/step"] for r in self.times)


def step_flops(trainer: Trainer, shape: ModelShape, rollout: Rollout,
               samples: list[dict], step: int) -> dict[str, int]:
    """Model FLOPs of step ``step``'s phases, from its rollout and saved completions (all
    rows); the old-log-prob pass leaves the first update's rows to it (``deferred_rows``)."""
    g, rows = rollout.group_size, len(rollout.texts)
    prompts = rows // g
    rewards = torch.zeros(rows)  # (B,)
    for row, sample in zip(saved_rows(prompts, g, rows), samples, strict=True):
        rewards[row] = sample["reward"]
    advantages = adv_lib.estimate(trainer.config.loss.advantage, rewards, g)  # (B,)
    deferred = deferred_rows(rollout, advantages, trainer.update_settings,
                             trainer.parts.step_seed(step))
    scored = None if deferred is None else torch.nonzero(~deferred).squeeze(-1)
    return {"generate": rollout_flops(shape, rollout),
            "old_logprobs": rollout_flops(shape, rollout, scored),
            "update": update_flops(shape, rollout, torch.nonzero(advantages).squeeze(-1))}


def timed_steps(config: Config, workdir: Path, steps: int) -> Steps:
    """``steps`` steps of a fresh trainer (after one untimed warm-up step)."""
    p, g = config.rollout.prompts_per_step, config.rollout.group_size
    if config.train.samples_per_step != p * g or config.rollout.filter_groups:
        raise ValueError("timed steps need train.samples_per_step = P * G, no filter_groups")
    trainer = Trainer(config, prepare_run_dir(config, workdir, resume=False))
    engine = trainer.parts.sampler = Recording(trainer.parts.sampler)
    shape = ModelShape.of(trainer.parts.model)
    state, stream = TrainState(), trainer.parts.splits.train_slots()
    out = Steps(shape=shape)
    for step in range(1, steps + 2):  # steps count from 1 (their stream slots and seeds)
        cpu = time.process_time()
        result = trainer.train_step(step, state, stream)
        cpu = time.process_time() - cpu
        if step > 1:
            out.times.append(result.record)
            out.flops.append(step_flops(trainer, shape, engine.last, result.samples, step))
            out.cpu.append(cpu)
    del trainer, engine
    gc.collect()
    return out


@dataclass(frozen=True)
class Throughput:
    """Matmul throughput on the model's linear shapes, FLOP/s."""

    peak: float  # at maspo.flops.PEAK_TOKENS rows: the floor the phases are measured against
    decode: float  # at one token per completion (P x G rows): what decode steps can reach


def throughput(shape: ModelShape, dtype: torch.dtype, device: torch.device | str,
               rows: int) -> Throughput:
    return Throughput(matmul_throughput(shape, dtype, device),
                      matmul_throughput(shape, dtype, device, tokens=rows))


def phase_lines(steps: Steps, floor: Throughput) -> list[str]:
    """One line per phase: median time and GFLOP, GFLOP/s, utilisation of the floor."""
    lines = []
    for key, name in PHASES:
        achieved = steps.achieved(key)
        gflop = statistics.median(f[key] for f in steps.flops) / GIGA
        lines.append(f"  {name:<14} {steps.median(f'time/{key}'):7.2f} s  {gflop:7.1f} GFLOP  "
                     f"{achieved / GIGA:7.1f} GFLOP/s  utilisation {achieved / floor.peak:6.1%}")
    return lines
