"""CPU time of this checkout's sampler against another commit's, at fp32 and bf16, in one
process.

Not a test. The other commit's ``maspo/rollout/sampler.py`` (read with ``git show``) is
loaded beside this checkout's, with everything else this checkout's, so only the sampler
differs. Both sample the same prompts with the same seeds on the same model (the
embedded SmolLM2-135M-Instruct by default), alternating (A, B, A, B, ...) so machine noise
hits both alike: a training rollout (``--prompts`` x ``--group`` completions) and an
evaluation (``--eval-prompts`` prompts x 4 completions at temperature 0.7, 16 prompts per
call, as the trainer's held-out evaluation), each at ``--tokens`` new tokens, under fp32
and under bf16 autocast (the model prepared as the trainer prepares it). Printed: whether
the two produce the same tokens and log-probabilities, each one's median CPU seconds,
the ratio A / B, and each one's bf16 / fp32 ratio.

    python bench/sampling.py a65d65e [--reps 3] [--threads 1] [--tokens 16]
                             [--prompts 8] [--group 8] [--eval-prompts 64]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from maspo.data import get_task, render_prompt, train_stream
from maspo.models import load_policy, resolve_model
from maspo.precision import autocast, prepare_model
from maspo.rollout import SamplingSettings
from maspo.rollout import sampler as this_sampler

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("fp32", "bf16")
EVAL_N, EVAL_TEMPERATURE, EVAL_BATCH = 4, 0.7, 16  # the trainer's held-out evaluation


def other_sampler(commit: str):
    """The sampler module of ``commit``, imported under its own name."""
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:maspo/rollout/sampler.py"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        print(f"sampling: cannot read the sampler of {commit!r}: {shown.stderr.strip()}",
              file=sys.stderr)
        raise SystemExit(2)  # a commit that does not exist: bad input
    path = Path(tempfile.mkdtemp(prefix="maspo-sampler-")) / "other_sampler.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location("other_sampler", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["other_sampler"] = module  # (dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the commit whose sampler is B")
    parser.add_argument("--reps", type=int, default=3, help="timed alternations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--eval-prompts", type=int, default=64)
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    samplers = {"A": this_sampler, "B": other_sampler(args.commit)}
    models = {}
    for precision in PRECISIONS:
        models[precision], tokenizer = load_policy(resolve_model(args.model))
        prepare_model(models[precision], precision)
    stream = train_stream(get_task("arithmetic"), seed=0, test_size=50)
    prompts = [render_prompt(tokenizer, next(stream).prompt)
               for _ in range(args.prompts + args.eval_prompts)]
    work = {
        "rollout": (prompts[:args.prompts], args.group,
                    SamplingSettings(max_new_tokens=args.tokens), args.prompts),
        "eval": (prompts[args.prompts:], EVAL_N,
                 SamplingSettings(max_new_tokens=args.tokens, temperature=EVAL_TEMPERATURE),
                 EVAL_BATCH),
    }

    def run(side: str, precision: str, name: str, seed: int):
        listed, n, settings, batch = work[name]
        with autocast(precision, "cpu"):
            return [samplers[side].sample(models[precision], tokenizer, listed[i:i + batch], n,
                                          settings, seed=seed + i)
                    for i in range(0, len(listed), batch)]

    print(f"A: this checkout; B: the sampler of {args.commit}; {args.threads} threads; "
          f"rollout {args.prompts} prompts x {args.group}, evaluation {args.eval_prompts} "
          f"prompts x {EVAL_N} (temperature {EVAL_TEMPERATURE}), {args.tokens} new tokens")
    times: dict[tuple[str, str, str], list[float]] = {}
    for rep in range(args.reps + 1):  # rep 0 warms up and compares the outputs
        for precision in PRECISIONS:
            for name in work:
                out = {}
                for side in ("A", "B") if rep % 2 == 0 else ("B", "A"):
                    start = time.process_time()
                    out[side] = run(side, precision, name, rep)
                    times.setdefault((precision, name, side), []).append(
                        time.process_time() - start)
                if rep == 0:
                    same = all(torch.equal(a.input_ids, b.input_ids)
                               and torch.equal(a.sampling_logprobs, b.sampling_logprobs)
                               for a, b in zip(out["A"], out["B"], strict=True))
                    print(f"{precision} {name}: A and B sample "
                          f"{'the same tokens and log-probs' if same else 'differently'}")
    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    for precision in PRECISIONS:
        for name in work:
            a, b = median[(precision, name, "A")], median[(precision, name, "B")]
            print(f"{precision} {name:<8} A {a:6.2f} CPU-s  B {b:6.2f} CPU-s  A/B {a / b:.2f}")
    for name in work:
        ratios = [median[("bf16", name, s)] / median[("fp32", name, s)] for s in ("A", "B")]
        print(f"bf16 / fp32 {name:<8} A {ratios[0]:.2f}  B {ratios[1]:.2f}")


if __name__ == "__main__":
    main()
