"""What dynamic sampling costs and buys: groups with a learning signal per CPU-second.

Two trainers on the same config and seed, one with ``rollout.filter_groups=true``, take
alternate steps in one process (one torch thread each, so CPU time is the work done).
Per arm it prints the share of tied groups among those drawn, the untied groups trained
on per step, the CPU seconds per step and their ratio, groups with signal per CPU-second.

    python bench/dynamic_sampling.py [--config study] [--steps 6] [--max-draws 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from maspo.config import load_config
from maspo.parts import TrainState
from maspo.rollout.groups import tied_groups
from maspo.run import prepare_run_dir
from maspo.trainer import Trainer


def arm(config, out: Path):
    trainer = Trainer(config, prepare_run_dir(config, out))
    return trainer, TrainState(), trainer.parts.splits.train_stream()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="study")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--max-draws", type=int, default=8)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    names = ("plain", "filter_groups")
    totals = {name: {"cpu": 0.0, "wall": 0.0, "drawn": 0, "tied": 0, "trained": 0}
              for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        arms = {}
        for name in names:
            extra = [f"rollout.filter_groups={name == 'filter_groups'}",
                     f"rollout.max_draws={args.max_draws}", "train.threads=1",
                     "train.save_every=0"]
            config = load_config(args.config, [*args.overrides, *extra])
            p, g = config.rollout.prompts_per_step, config.rollout.group_size
            config = load_config(args.config, [*args.overrides, *extra,
                                               f"train.samples_per_step={p * g}"])
            arms[name] = arm(config, Path(tmp) / name)
        for step in range(1, args.steps + 1):
            for name in names:
                trainer, state, stream = arms[name]
                cpu, wall = time.process_time(), time.perf_counter()
                result = trainer.train_step(step, state, stream)
                t = totals[name]
                t["cpu"] += time.process_time() - cpu
                t["wall"] += time.perf_counter() - wall
                rewards = torch.tensor([s["reward"] for s in result.samples])  # (B,) saved
                q = len(rewards) // g  # groups trained on (P, fewer at the bound)
                order = torch.tensor([(k % q) * g + k // q for k in range(q * g)])
                by_row = torch.empty_like(rewards)
                by_row[order] = rewards  # back in rollout order (saved: first of each first)
                untied = int((~tied_groups(by_row, g)).sum()) if len(rewards) else 0
                record = result.record
                t["drawn"] += int(record.get("dynamic/draws", 1)) * p
                t["tied"] += (round(record["dynamic/tied_frac"] * record["dynamic/draws"] * p)
                              if "dynamic/tied_frac" in record else p - untied)
                t["trained"] += untied
                print(f"step {step} {name:13s} cpu {time.process_time() - cpu:6.1f} s  "
                      f"untied groups trained {untied}/{p}", flush=True)
    print(f"\n{args.steps} steps each, config {args.config!r}, one thread, "
          f"{torch.backends.cpu.get_cpu_capability()} kernels:")
    for name in names:
        t = totals[name]
        print(f"  {name:13s} tied share of drawn groups {t['tied'] / t['drawn']:.2f}  "
              f"untied groups trained {t['trained'] / args.steps:.2f}/step  "
              f"CPU {t['cpu'] / args.steps:.1f} s/step  "
              f"signal {t['trained'] / t['cpu']:.3f} groups/CPU-s")
    ratio = (totals["filter_groups"]["trained"] / totals["filter_groups"]["cpu"]) / (
        totals["plain"]["trained"] / totals["plain"]["cpu"])
    print(f"  groups with signal per CPU-second, filter_groups / plain = {ratio:.2f}")


if __name__ == "__main__":
    main()
