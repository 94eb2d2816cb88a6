"""Forward+backward time and peak memory of every objective, relative to `grpo`.

Not a test: prints a table measured in one run. Each objective is timed alternately with
`grpo` on the same (B=512, T=2048) float32 CPU tensors; the ratio is the median over
--repeats back-to-back pairs of (objective time / grpo time), so machine noise hits both
sides of each pair alike. Peak memory is measured in a fresh subprocess per objective:
glibc is told to return freed large blocks to the OS (MALLOC_MMAP_THRESHOLD_), the
kernel's peak-RSS mark is reset after the inputs exist (/proc/self/clear_refs), and the
peak growth during one forward+backward is reported. Target (issue 2): maspo <= 1.1x grpo.

    python bench/objectives.py [--repeats 7] [--batch 512] [--tokens 2048]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

from maspo.losses import aggregate, names, policy_loss


def make_inputs(b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    old = torch.log(torch.rand(b, t, generator=g).clamp(min=1e-8))  # (B, T)
    logp = (old + 0.3 * torch.randn(b, t, generator=g)).requires_grad_(True)
    adv = torch.randn(b, generator=g)  # (B,)
    lengths = torch.randint(t // 4, t + 1, (b,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return logp, old, adv, mask


def step(name: str, logp, old, adv, mask) -> None:
    out = policy_loss(name, logp, old, adv, mask)
    aggregate(out.per_token, mask).backward()
    logp.grad = None


def timed(name: str, inputs) -> float:
    start = time.perf_counter()
    step(name, *inputs)
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_peak(name: str, b: int, t: int) -> float:
    """In this (fresh) process: peak RSS growth in MiB of one forward+backward."""
    inputs = make_inputs(b, t)
    step(name, *make_inputs(2, 4))  # load kernels outside the measured window
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    base = _status_kib("VmRSS")
    step(name, *inputs)
    return (_status_kib("VmHWM") - base) / 1024


def peak_memory_mib(name: str, b: int, t: int) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"from objectives import measure_peak; print(measure_peak({name!r}, {b}, {t}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inputs = make_inputs(args.batch, args.tokens)
    input_mib = 4 * 4 * args.batch * args.tokens / 2**20
    for name in names():  # warm-up
        step(name, *inputs)
    print(f"forward+backward on (B={args.batch}, T={args.tokens}) float32, CPU, "
          f"{args.threads} threads, median over {args.repeats} alternating pairs; "
          f"inputs {input_mib:.0f} MiB")
    print(f"{'objective':<12} {'ms':>8} {'grpo ms':>8} {'ratio':>6} {'peak MiB':>9}")
    for name in names():
        ours, base = [], []
        for _ in range(args.repeats):
            base.append(timed("grpo", inputs))
            ours.append(timed(name, inputs))
        ratio = statistics.median(o / b for o, b in zip(ours, base, strict=True))
        ms, base_ms = statistics.median(ours) * 1e3, statistics.median(base) * 1e3
        peak = peak_memory_mib(name, args.batch, args.tokens)
        print(f"{name:<12} {ms:8.1f} {base_ms:8.1f} {ratio:6.2f} {peak:9.0f}")


if __name__ == "__main__":
    main()
