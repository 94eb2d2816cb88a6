"""Peak memory and time of `token_logprobs` against the naive full-logits computation.

Not a test: prints a table measured in one run. The model is a tiny Llama (2 layers,
hidden 64) with the real SmolLM2 vocabulary (V = 49152), so the lm_head and softmax,
which is what we chunk, dominate: the worst case for our time overhead (backward
recomputes each chunk). With the real 30-layer SmolLM2 trunk, 128 x 60 tokens, ours and
naive took the same time (25-31 s forward+backward). Shape: B = 8 sequences
of a 64-token prompt plus T = 512 completion tokens; the reference size is one fp32
logits tensor over the completion, B * T * V * 4 bytes (805 MB). The naive side is the
usual `log_softmax(model(x, logits_to_keep=T + 1).logits)` plus gather (and entropy).
Target: ours <= 1.25x the logits size, forward and forward+backward.

How CPU peak memory is measured: PyTorch has no CPU allocator statistics, and
`torch.profiler` records allocations but not reliably the peak across autograd's
internal buffers, so each measurement runs in a fresh interpreter and reads the
kernel's own accounting. After building the model and inputs and one small warm-up
call (lazy one-time initialisation), the worker resets the process's peak RSS
(writing 5 to /proc/self/clear_refs, Linux >= 4.0) and records the current RSS; after
one call it reads the peak RSS (VmHWM) again. The difference is the memory the call
needed above what was already resident. The worker runs with
`MALLOC_MMAP_THRESHOLD_=1 MiB`, so every tensor of 1 MiB or more gets its own mmap and
is returned to the kernel when freed: RSS then follows live tensor memory instead of
hiding a peak inside memory malloc kept from earlier. Times come from one more worker
with the default malloc settings (the threshold above would add page faults to both
sides) that calls naive and ours alternately, after a full-size warm-up of each, and
reports the median of --repeats calls of each, so machine noise hits both sides alike.

    python bench/logprobs.py [--repeats 3] [--batch 8] [--tokens 512] [--chunk-size 0]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from maspo.logprobs import token_logprobs

VOCAB = 49152  # SmolLM2's vocabulary
PROMPT = 64
MMAP_THRESHOLD = 1 << 20  # bytes; larger allocations bypass malloc's free lists (see above)
MIB = 1 << 20


def build(batch: int, tokens: int) -> tuple[LlamaForCausalLM, torch.Tensor, torch.Tensor]:
    """A tiny Llama with the SmolLM2 vocabulary and a batch of random token ids."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    ids = torch.randint(3, VOCAB, (batch, PROMPT + tokens))  # (B, P + T)
    return model, ids, torch.ones_like(ids)


def naive(model, ids, mask, start: int, with_entropy: bool) -> torch.Tensor:
    """Full (B, T, V) logits, log_softmax and gather: what we avoid."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = ids.shape[1] - start + 1
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   logits_to_keep=keep).logits[:, :-1]  # (B, T, V)
    logp_all = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    out = logp_all.gather(-1, ids[:, start:, None]).squeeze(-1)  # (B, T)
    if with_entropy:
        out = out - 0.01 * (logp_all.exp() * logp_all).sum(-1)
    return out


def ours(model, ids, mask, start: int, with_entropy: bool, chunk_size: int) -> torch.Tensor:
    """`token_logprobs`, folded into one (B, T) tensor like `naive`."""
    stats = token_logprobs(model, ids, mask, start, with_entropy=with_entropy,
                           chunk_size=chunk_size or None)
    return stats.logprobs + 0.01 * stats.entropy if with_entropy else stats.logprobs


def call(method: str, backward: bool, model, ids, mask, with_entropy: bool,
         chunk_size: int) -> None:
    """One forward (under no_grad) or forward+backward of `method`."""
    args = (model, ids, mask, PROMPT, with_entropy)
    run = (lambda: naive(*args)) if method == "naive" else (lambda: ours(*args, chunk_size))
    if not backward:
        with torch.no_grad():
            run()
        return
    run().sum().backward()
    model.zero_grad(set_to_none=True)


def rss_bytes(field: str) -> int:
    """A VmRSS / VmHWM line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def memory_worker(args: argparse.Namespace) -> None:
    """Print the peak RSS growth (bytes) of one call of one method, in this fresh process."""
    torch.set_num_threads(args.threads)
    model, ids, mask = build(args.batch, args.tokens)
    small = (model, ids[:1, : PROMPT + 8], mask[:1, : PROMPT + 8], args.entropy, args.chunk_size)
    call(args.method, args.backward, *small)  # warm-up: lazy initialisation, tiny shapes
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak RSS to the current RSS
    base = rss_bytes("VmRSS")
    call(args.method, args.backward, *(model, ids, mask, args.entropy, args.chunk_size))
    print(json.dumps(rss_bytes("VmHWM") - base))


def time_worker(args: argparse.Namespace) -> None:
    """Print median seconds of naive and ours, timed alternately in this process."""
    torch.set_num_threads(args.threads)
    full = (*build(args.batch, args.tokens), args.entropy, args.chunk_size)
    times: dict[str, list[float]] = {"naive": [], "ours": []}
    for repeat in range(args.repeats + 1):
        for method in times:
            start = time.perf_counter()
            call(method, args.backward, *full)
            if repeat:  # the first round is a full-size warm-up
                times[method].append(time.perf_counter() - start)
    print(json.dumps({method: statistics.median(ts) for method, ts in times.items()}))


def run_worker(args: argparse.Namespace, backward: bool, entropy: bool, measure: str,
               method: str = "", env: dict[str, str] | None = None):
    """Run this script as a worker in a fresh interpreter and return its JSON answer."""
    cmd = [sys.executable, __file__, "--worker", measure, "--method", method or "ours",
           "--repeats", str(args.repeats), "--batch", str(args.batch),
           "--tokens", str(args.tokens), "--chunk-size", str(args.chunk_size),
           "--threads", str(args.threads)]
    cmd += ["--backward"] * backward + ["--entropy"] * entropy
    done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=0, help="0: the library default")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--worker", choices=["memory", "time"], help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=["naive", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--entropy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        (time_worker if args.worker == "time" else memory_worker)(args)
        return

    logits = args.batch * args.tokens * VOCAB * 4  # bytes of one fp32 (B, T, V) tensor
    malloc = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    print(f"B={args.batch} T={args.tokens} V={VOCAB} chunk={args.chunk_size or 'default'} "
          f"threads={args.threads}; fp32 logits = {logits / MIB:.0f} MiB")
    print(f"{'mode':<18}{'naive MiB':>10}{'x logits':>9}{'ours MiB':>10}{'x logits':>9}"
          f"{'time ours/naive':>17}")
    for backward in (False, True):
        for entropy in (False, True):
            slow, fast = (run_worker(args, backward, entropy, "memory", method, malloc) / logits
                          for method in ("naive", "ours"))
            secs = run_worker(args, backward, entropy, "time")
            mode = ("fwd+bwd" if backward else "fwd") + (" +entropy" if entropy else "")
            print(f"{mode:<18}{slow * logits / MIB:>10.0f}{slow:>9.2f}"
                  f"{fast * logits / MIB:>10.0f}{fast:>9.2f}"
                  f"{secs['ours'] / secs['naive']:>11.2f} "
                  f"({secs['ours']:.2f}s / {secs['naive']:.2f}s)")


if __name__ == "__main__":
    main()
