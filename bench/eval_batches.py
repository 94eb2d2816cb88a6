"""CPU time of a run's held-out evaluation at the default batch against 128 completions and
16 prompts a call.

Not a test. Builds a run's parts from a preset (default ``study_two_digit``: 256 held-out
prompts x 1 sample; ``study``: 200 x 4) and evaluates its held-out set with its own
evaluation settings: with ``prompts_per_batch`` left at its default
(``maspo.evaluate.EvalSettings.batch_prompts``: 128 completions a call or more while the
cache stays small), at 128 completions a call (the default before) and at 16 prompts a
call (the fixed batch before that), in turn (default, 128, 16, default, ...) in one
process at one thread, under fp32 and under bf16 autocast. The seeds do not depend on the
batch (``maspo.evaluate.problem_seeds``), so all sample the same noise; printed: how
many completions are the same string as the default's (all of them at fp32 on CPU; under
bf16 the matmuls round differently at different batch sizes), each side's median CPU
seconds and accuracy, and the ratios default / 128 and default / 16.

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

from maspo.config import EVAL_BATCH_ROWS, load_config  # noqa: E402
from maspo.data import render_prompt  # noqa: E402
from maspo.errors import UserError  # noqa: E402
from maspo.evaluate import prompts_per_call, sample_and_score  # noqa: E402
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
        settings = parts.eval_settings
        rows_before = max(1, EVAL_BATCH_ROWS // settings.n)
        sides = {"default": settings,
                 "128": dataclasses.replace(settings, prompts_per_batch=rows_before),
                 "16": dataclasses.replace(settings, prompts_per_batch=OLD_BATCH)}
        rendered = [render_prompt(parts.tokenizer, ex.prompt, settings.system_prompt,
                                  settings.chat_template) for ex in heldout]
        per_call = prompts_per_call(parts.tokenizer, rendered, settings)
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
        same = {side: sum(a == b for a, b in zip(texts["default"], texts[side], strict=True))
                for side in ("128", "16")}
        median = {side: statistics.median(times[side]) for side in sides}
        print(f"{precision} ({parts.precision_mode}): {len(heldout)} prompts x {settings.n}, "
              f"{per_call} prompts a call by default; completions the same as the "
              f"default's: at 128 {same['128']}/{len(texts['128'])}, at 16 "
              f"{same['16']}/{len(texts['16'])}")
        print(f"{precision}  " + "  ".join(
            f"{side} {median[side]:6.2f} CPU-s (acc {accuracy[side]:.4f})" for side in sides)
            + f"  default/128 {median['default'] / median['128']:.2f}"
            f"  default/16 {median['default'] / median['16']:.2f}", flush=True)

if __name__ == "__main__":
    main()
