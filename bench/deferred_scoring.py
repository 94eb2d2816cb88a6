"""The learning phase of a step (old-policy pass + K updates) with the first update
scoring its own rows for pi_old, against scoring every row first.

Not a test. One trainer (``--config``, default the ``maspo`` preset on the embedded
default model) samples one step's rollout (with ``rollout.filter_groups``, its untied
groups, as the trainer draws them); its learning phase (``RunParts.learn``: the
old-policy pass and the K updates) then runs again and again from the same weights and a
fresh optimizer (after one untimed run), alternating the two ways
(``UpdateSettings.defer_first`` on and off), on one torch thread, so CPU time is the work
done. Printed per way: the CPU seconds of
the old-policy pass and of the updates, each round's ratio of the whole learning phase
(deferred / scored first), their median, and whether the two ways ended with the same
weights (they should, bit for bit).

    python bench/deferred_scoring.py [--config maspo] [--rounds 3] [section.key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from maspo.config import load_config
from maspo.parts import TrainState
from maspo.run import prepare_run_dir
from maspo.step_log import Clock
from maspo.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="maspo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(args.config, [*args.overrides, "train.threads=1",
                                           "train.save_every=0"])
        trainer = Trainer(config, prepare_run_dir(config, Path(tmp) / "run"))
        parts = trainer.parts
        slots, clock = parts.splits.train_slots(), Clock(parts.device)
        if config.rollout.filter_groups:  # the groups with a signal, as the trainer draws them
            drawn, _ = parts.draw_untied(1, TrainState(), slots, clock)
        else:
            drawn = parts.draw(1, 0, TrainState(), slots, clock)
        start = {k: v.clone() for k, v in parts.model.state_dict().items()}
        ways = {"deferred": trainer.update_settings,
                "scored first": dataclasses.replace(trainer.update_settings, defer_first=False)}
        times: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
        weights: dict[str, dict[str, torch.Tensor]] = {}
        parts.learn(parts.learner(), ways["deferred"], 1, TrainState(), drawn,
                    Clock(parts.device))  # untimed: first-touch memory and lazy set-up
        for round_ in range(args.rounds):
            names = list(ways) if round_ % 2 == 0 else list(reversed(ways))
            for name in names:
                parts.model.load_state_dict(start)
                clock = Clock(parts.device)
                cpu = time.process_time()
                parts.learn(parts.learner(), ways[name], 1, TrainState(), drawn, clock)
                times[name].append({"cpu": time.process_time() - cpu,
                                    "old": clock.times["old_logprobs"],
                                    "update": clock.times["update"]})
                weights[name] = {k: v.clone() for k, v in parts.model.state_dict().items()}
        rollout = drawn.rollout
        print(f"{config.rollout.prompts_per_step} prompts x {rollout.group_size}, "
              f"{int(rollout.completion_mask.sum())} completion tokens, "
              f"K={config.optim.updates_per_step}, micro-batch {config.optim.micro_batch_size}, "
              f"one thread, {torch.backends.cpu.get_cpu_capability()} kernels, "
              f"{parts.precision_mode}")
        for name in ways:
            t = times[name]
            print(f"  {name:12s} learning {statistics.median(r['cpu'] for r in t):6.2f} CPU-s "
                  f"(old-policy pass {statistics.median(r['old'] for r in t):5.2f} s, "
                  f"updates {statistics.median(r['update'] for r in t):5.2f} s; medians)")
        ratios = [a["cpu"] / b["cpu"] for a, b in zip(*times.values(), strict=True)]
        print("deferred / scored first, learning phase: "
              + ", ".join(f"{r:.2f}" for r in ratios)
              + f"; median {statistics.median(ratios):.2f}")
        same = all(torch.equal(weights["deferred"][k], weights["scored first"][k])
                   for k in weights["deferred"])
        print(f"same weights after the K updates: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
