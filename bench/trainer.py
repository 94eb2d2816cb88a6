"""Step time of maspo's trainer vs TRL's GRPOTrainer at fp32 and bf16, each phase's
model-FLOPs utilisation, and maspo's phases against raw HF building blocks.

Not a test: prints numbers measured in one process, alternating the two trainers
(maspo, TRL, maspo, TRL, ...) and the precisions so machine noise hits all alike. Both
train the same model (the embedded SmolLM2-135M-Instruct by default), on the same prompts
(single-digit + and x), with the same group size, completion length, sampling
(temperature 1, top-p 1, no top-k), precision, loss (GRPO clip, no KL), and the same
number of optimizer updates per rollout: maspo's K mini-batches == TRL's
steps_per_generation = K with per-device batch P*G/K. One maspo step (a rollout + K
updates) is compared with K TRL optimizer steps. Precision: fp32 on both sides, or bf16
autocast on both sides (maspo's ``train.precision=bf16``, TRL's ``GRPOConfig(bf16=True)``);
fp32 weights, optimizer state and loss either way.

Both trainers run with glibc's default allocator settings: the bench measures the
trainers' code, not ``maspo.memory``'s setting, which ``maspo`` processes make (in one
process it would apply to both).

It starts by printing the machine's bf16 units (torch's CPU kernel level, the CPU flags
avx512_bf16 / amx_bf16) and, per precision, the matmul throughput measured in this process
on the model's own linear shapes (``maspo.flops.matmul_throughput``: at 1024 rows, the
floor, and at P*G rows, one decode step). Each maspo phase (sampling, old log-probs,
updates) is then shown with its model FLOPs (``maspo.flops``: 2 x weights per token plus
attention, backward twice the forward, each prompt once per group), the throughput it
achieved and its utilisation of the floor.

Then, on the same P prompts, it alternates maspo's sampler (each prompt encoded once,
its G samples on the shared cache) with raw HF `generate(num_return_sequences=G)` at the
same sampling settings and length cap, and on one maspo rollout batch times a plain
forward (+ backward) with full-vocabulary log_softmax; it prints maspo's phase times
against these raw building blocks (under the same precision).

    python bench/trainer.py [--model default] [--rounds 2] [--steps 3] [--prompts 8]
                            [--group 8] [--tokens 8] [--updates 2] [--threads 2]
                            [--reps 3] [--precisions fp32,bf16] [--generate-only]
                            [--no-trl]

``--no-trl`` times maspo alone (its phases, utilisation and bf16 / fp32 ratio), without
TRL's trainer or the raw HF building blocks: a quicker, smaller run (TRL's bf16 trainer
alone held over 4 GB here).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from mfu import GIGA, PHASES, Steps, Throughput, phase_lines, throughput, timed_steps
from transformers import GenerationConfig

from maspo.config import load_config
from maspo.data import get_task, render_prompt, train_stream
from maspo.models import load_policy, resolve_model
from maspo.precision import autocast, bf16_units, cpu_flags
from maspo.rollout import SamplingSettings, sample
from maspo.rollout.sampler import stop_token_ids

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def maspo_steps(args, model_path: Path, workdir: Path, tag: str, precision: str) -> Steps:
    """Phase times and FLOPs of ``args.steps`` maspo steps (after one warm-up step)."""
    overrides = [
        f"model.path={model_path}", f"train.output_dir={workdir / tag}",
        f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
        f"rollout.max_new_tokens={args.tokens}", f"optim.updates_per_step={args.updates}",
        f"optim.micro_batch_size={args.prompts * args.group // args.updates}",
        "loss.name=grpo", "train.save_every=0", "data.test_size=50",
        # TRL's side samples at temperature 1 and grades cut completions too: match both
        "rollout.temperature=1.0", "reward.score_truncated=true",
        f"train.threads={args.threads}", f"train.precision={precision}",
        f"train.samples_per_step={args.prompts * args.group}",  # every row's reward
    ]
    return timed_steps(load_config(None, overrides), workdir / tag, args.steps)


def trl_steps(args, model_path: Path, workdir: Path, tag: str, precision: str) -> list[float]:
    """Wall time of each rollout's K optimizer steps in TRL (after one warm-up rollout)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from maspo.rewards import load_reward_fn

    task = get_task("arithmetic")
    stream = train_stream(task, seed=0, test_size=50)
    n_prompts = args.prompts * (args.steps + 1)
    examples = [next(stream) for _ in range(n_prompts)]
    dataset = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": ex.prompt}] for ex in examples],
        "answer": [ex.answer for ex in examples],
    })
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            stamps.append(time.perf_counter())

    per_device = args.prompts * args.group // args.updates
    config = GRPOConfig(
        output_dir=str(workdir / tag), per_device_train_batch_size=per_device,
        num_generations=args.group, steps_per_generation=args.updates, num_iterations=1,
        max_completion_length=args.tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=2e-5, beta=0.0, loss_type="bnpo", epsilon=0.2, epsilon_high=0.2,
        max_steps=(args.steps + 1) * args.updates, logging_steps=1, report_to="none",
        use_cpu=True, save_strategy="no", seed=0, disable_tqdm=True, shuffle_dataset=False,
        # fp32 weights either way; bf16=True is bf16 autocast (GRPOConfig's default), as
        # maspo's train.precision=bf16
        bf16=precision == "bf16", fp16=False,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    trainer = GRPOTrainer(model, load_reward_fn("math"), config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[Clock()])
    start = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        trainer.train()  # (its per-step log lines go nowhere)
    del trainer, model
    gc.collect()
    ends = stamps[args.updates - 1::args.updates]  # the end of each rollout's K steps
    starts = [start, *ends[:-1]]
    return [e - s for s, e in zip(starts, ends, strict=True)][1:]


def naive_logprobs(model, ids, att, start):
    """The plain way: full (B, T, V) logits, log_softmax, gather."""
    logits = model(input_ids=ids, attention_mask=att).logits[:, start - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, ids[:, start:, None])[..., 0]


def hf_generate(model, tokenizer, prompts: list[str], args, seed: int) -> int:
    """Raw HF `generate` with G return sequences per prompt; returns the tokens decoded."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    stops = stop_token_ids(model, tokenizer)
    config = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                              max_new_tokens=args.tokens, num_return_sequences=args.group,
                              eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**enc, generation_config=config)
    return out.shape[0] * (out.shape[1] - enc["input_ids"].shape[1])


def raw_blocks(args, model_path: Path, precision: str) -> dict[str, float]:
    """Sampler vs raw HF generate, and forward/backward times, on one batch of prompts,
    each under ``precision``'s autocast (the raw model keeps HF's own attention)."""
    model, tokenizer = load_policy(model_path)
    task = get_task("arithmetic")
    stream = train_stream(task, seed=0, test_size=50)
    prompts = [render_prompt(tokenizer, next(stream).prompt) for _ in range(args.prompts)]
    times: dict[str, list[float]] = {"sampler": [], "generate": [], "forward": [],
                                     "forward_backward": [], "sampler_tokens": [],
                                     "generate_tokens": []}
    for rep in range(args.reps):
        t0 = time.perf_counter()
        with autocast(precision, "cpu"):
            rollout = sample(model, tokenizer, prompts, args.group,
                             SamplingSettings(max_new_tokens=args.tokens, temperature=1.0),
                             seed=rep)
        times["sampler"].append(time.perf_counter() - t0)
        times["sampler_tokens"].append(rollout.completion_mask.sum().item())
        t0 = time.perf_counter()
        with autocast(precision, "cpu"):
            times["generate_tokens"].append(hf_generate(model, tokenizer, prompts, args, rep))
        times["generate"].append(time.perf_counter() - t0)
        if args.generate_only:
            continue
        ids, att, start = rollout.input_ids, rollout.attention_mask, rollout.prompt_len
        t0 = time.perf_counter()
        with autocast(precision, "cpu"), torch.no_grad():
            naive_logprobs(model, ids, att, start)
        times["forward"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for rows in torch.arange(len(ids)).tensor_split(args.updates):
            with autocast(precision, "cpu"):
                logp = naive_logprobs(model, ids[rows], att[rows], start)
                (logp * rollout.completion_mask[rows]).sum().backward()
        times["forward_backward"].append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return {k: statistics.median(v) for k, v in times.items() if v}


def print_generate(args, raw: dict[str, float]) -> None:
    print(f"  sampler vs HF generate, same {args.prompts} prompts x {args.group}, "
          f"{args.tokens} new tokens, medians of {args.reps} alternated: maspo "
          f"{raw['sampler']:.2f} s ({raw['sampler_tokens']:.0f} tokens kept), HF "
          f"{raw['generate']:.2f} s ({raw['generate_tokens']:.0f} decoded incl. padding); "
          f"ratio {raw['sampler'] / raw['generate']:.2f}   (target <= 0.5)")


def machine_lines() -> list[str]:
    """The bf16 units of this CPU: torch's kernel level and the flags lscpu shows."""
    units = bf16_units("cpu")
    flags = cpu_flags()
    shown = ", ".join(f"{f} {'yes' if f in flags else 'no'}"
                      for f in ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16"))
    return [f"machine: torch {torch.__version__}, CPU kernels {units.capability}; "
            f"flags: {shown or 'unknown (no /proc/cpuinfo)'}",
            f"bf16 units: {units.describe()}"]


def print_precision(args, precision: str, ours: Steps, theirs: list[float],
                    floor: Throughput, raw: dict[str, float] | None) -> None:
    step = ours.median("time/step")
    print(f"\n== {precision}: maspo train.precision={precision}"
          + (f", TRL bf16={precision == 'bf16'}" if theirs else "")
          + f"; medians over {len(ours.times)} steps each ==")
    print(f"maspo step  {step:7.2f} s   (the process held a core {ours.cpu_share():.0%} of it)")
    if theirs:
        trl = statistics.median(theirs)
        print(f"TRL step    {trl:7.2f} s   (K={args.updates} optimizer steps)")
        print(f"ratio maspo / TRL = {step / trl:.2f}   (target <= 0.3)")
    print(f"matmul throughput on the model's shapes ({precision}): "
          f"{floor.peak / GIGA:.1f} GFLOP/s at 1024 rows (the floor), "
          f"{floor.decode / GIGA:.1f} at {args.prompts * args.group} rows (a decode step)")
    print("maspo phases: model FLOPs and utilisation of the floor")
    for line in phase_lines(ours, floor):
        print(line)
    print(f"  {'score':<14} {ours.median('time/score'):7.2f} s")
    if raw is None:
        return
    print_generate(args, raw)
    print("  maspo phase vs raw HF building block on the same batch:")
    rows = [("generate", "HF generate"), ("old_logprobs", "forward + log_softmax"),
            ("update", "forward + backward, K mini-batches")]
    blocks = {"generate": raw["generate"], "old_logprobs": raw["forward"],
              "update": raw["forward_backward"]}
    names = dict(PHASES)
    for key, what in rows:
        ours_t, raw_t = ours.median(f"time/{key}"), blocks[key]
        print(f"    {names[key]:<14} {ours_t:7.2f} s  raw {raw_t:7.2f} s  overhead "
              f"{(ours_t / raw_t - 1) * 100:+6.1f}%   ({what})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=2, help="maspo/TRL alternations")
    parser.add_argument("--steps", type=int, default=3, help="timed rollouts per round")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--reps", type=int, default=3, help="sampler / generate alternations")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated: fp32, bf16 (each on both sides)")
    parser.add_argument("--generate-only", action="store_true",
                        help="only the sampler vs HF generate comparison (no trainers)")
    parser.add_argument("--no-trl", action="store_true",
                        help="maspo alone: no TRL trainer, no raw HF building blocks")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if not precisions or any(p not in DTYPES for p in precisions):
        parser.error(f"--precisions takes fp32 and/or bf16, got {args.precisions!r}")
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    model_path = resolve_model(args.model)
    for line in machine_lines():
        print(line)
    if args.generate_only:
        for precision in precisions:
            print(f"\n== {precision} ==")
            print_generate(args, raw_blocks(args, model_path, precision))
        return
    ours = {p: Steps() for p in precisions}
    theirs: dict[str, list[float]] = {p: [] for p in precisions}
    floors: dict[str, list[Throughput]] = {p: [] for p in precisions}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for p in precisions:
                ours[p].extend(maspo_steps(args, model_path, Path(tmp), f"maspo-{p}-{round_}",
                                           p))
                floors[p].append(throughput(ours[p].shape, DTYPES[p], "cpu",
                                            args.prompts * args.group))
                if not args.no_trl:
                    theirs[p] += trl_steps(args, model_path, Path(tmp), f"trl-{p}-{round_}", p)
    raw = {p: None if args.no_trl else raw_blocks(args, model_path, p) for p in precisions}

    print(f"\nmodel {args.model}; P={args.prompts} prompts x G={args.group}, "
          f"{args.tokens} new tokens, K={args.updates} updates per rollout, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds x {args.steps} steps")
    for p in precisions:
        floor = Throughput(statistics.median(f.peak for f in floors[p]),
                           statistics.median(f.decode for f in floors[p]))
        print_precision(args, p, ours[p], theirs[p], floor, raw[p])
    if set(precisions) == {"fp32", "bf16"}:
        line = ("\nbf16 / fp32 step time: maspo "
                f"{ours['bf16'].median('time/step') / ours['fp32'].median('time/step'):.2f}")
        if not args.no_trl:
            trl = statistics.median(theirs["bf16"]) / statistics.median(theirs["fp32"])
            line += f", TRL {trl:.2f}"
        print(line)


if __name__ == "__main__":
    main()
