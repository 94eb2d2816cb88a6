"""CPU time of a run's held-out evaluation at the default batch against 16 prompts a call.

Not a test. Builds a run's parts from a preset (default ``study_two_digit``: 256 held-out
prompts x 1 sample; ``study``: 200 x 4) and evaluates its held-out set with its own
evaluation settings, once with ``prompts_per_batch`` left at its default (128 completions
a call) and once at 16 prompts a call (the fixed batch before), alternating (default,
16, default, 16, ...) in one process at one thread, under fp32 and under bf16 autocast.
The seeds do not depend on the batch (``maspo.evaluate.problem_seeds``), so both sample
the same noise; printed: how many completions are the same string at both batches (all
of them at fp32 on CPU; under bf16 the matmuls round differently at different batch
sizes), each side's median CPU seconds and accuracy, and the ratio default / 16.

    python bench/eval_batches.py [--config study_two_digit] [--reps 2] [--test-size N]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maspo.config import load_config  # noqa: E402
from maspo.errors import UserError  # noqa: E402
from maspo.evaluate import sample_and_score  # noqa: E402
from maspo.parts import RunParts  # noqa: E402

OLD_BATCH = 16  # prompts per call before the default followed the completions per call


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="study_two_digit", help="preset or YAML file")
    parser.add_argument("--reps", type=int, default=2, help="evaluations per side (default 2)")
    parser.add_argument("--test-size", type=int, help="held-out prompts (default: the preset's)")
    args = parser.parse_args()
    if args.reps < 1 or (args.test_size is not None and args.test_size < 1):
        parser.error("--reps and --test-size must be at least 1")
    torch.set_num_threads(1)
    overrides = [] if args.test_size is None else [f"data.test_size={args.test_size}"]
    for precision in ("fp32", "bf16"):
        try:
            parts = RunParts.build(load_config(args.config,
                                               [*overrides, f"train.precision={precision}"]))
        except UserError as err:
            print(f"eval_batches: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        heldout = parts.splits.heldout
        sides = {"default": parts.eval_settings,
                 "16": dataclasses.replace(parts.eval_settings, prompts_per_batch=OLD_BATCH)}
        times: dict[str, list[float]] = {side: [] for side in sides}
        texts: dict[str, list[str]] = {}
        accuracy: dict[str, float] = {}
        for _ in range(args.reps):
            for side, settings in sides.items():
                start = cpu_seconds()
                with parts.precision():
                    results = sample_and_score(parts.model, parts.tokenizer, heldout, settings)
                times[side].append(cpu_seconds() - start)
                texts[side] = [text for r in results for text in r.completions]
                accuracy[side] = (sum(sum(r.correct) for r in results)
                                  / sum(len(r.correct) for r in results))
        same = sum(a == b for a, b in zip(texts["default"], texts["16"], strict=True))
        default, old = (statistics.median(times[side]) for side in sides)
        print(f"{precision} ({parts.precision_mode}): {len(heldout)} prompts x "
              f"{parts.eval_settings.n}, {parts.eval_settings.batch_prompts} prompts a call "
              f"by default; same completions at both batches: {same}/{len(texts['16'])}")
        print(f"{precision}  default {default:6.2f} CPU-s (acc {accuracy['default']:.4f})  "
              f"16 {old:6.2f} CPU-s (acc {accuracy['16']:.4f})  default/16 {default / old:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
