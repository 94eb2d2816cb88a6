"""CPU-seconds of a shortened study-preset run, this checkout against another commit.

Not a test. Each run is a whole ``maspo train --config PRESET`` process (start-up, model
load, training, held-out evaluations, checkpoint and final model included), shortened to
``--steps`` steps (the trainer evaluates its held-out set before training and after the
last step; ``train.eval_every=0`` adds none between). ``--config`` names this checkout's
preset (default ``study_two_digit``, the sequential study's); its YAML is written to a
file that both sides load, so a commit from before the preset existed runs the same
workload. ``--test-size`` shortens the held-out set (default: the preset's own, 256
prompts x 1 sample for the study). The other
commit is checked out with ``git worktree add`` into a temp folder and run by the same
Python (this virtual environment) with ``PYTHONPATH`` pointing at it, so only maspo's own
code differs. The two alternate (A B, then B A, ...) and each run's CPU time is the
user + system time of the finished process and the processes it waited for (getrusage
of children). Printed: each run's CPU and wall seconds, the ratio A / B pair by pair,
the median ratio and the ratio of the totals.

Each side runs the study preset as its own commit ships it (its own ``train.precision``)
unless overrides are given after ``--``, which apply to both sides, e.g.
``-- train.precision=fp32``; ``--a-override`` gives one to this checkout only (e.g.
``--a-override train.precision=auto``: what a study run costs now at bf16 against the
other commit's preset as it was).

``--floor`` then runs A once more under torch's FLOP counter (``bench/count_flops.py``)
and measures this CPU's matmul throughput on the model's shapes at A's precision and
threads (``maspo.flops.matmul_throughput``): the CPU-seconds A's matmuls alone take at
that rate, over B's median run, is the lowest A/B this CPU allows without less matmul
work.

    python bench/run_cost.py 1ed1077 [--config study_two_digit] [--pairs 3] [--steps 2]
                             [--test-size N] [--a-override section.key=value ...]
                             [--floor] [-- section.key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # this checkout
ANNOUNCE = re.compile(r"maspo: training \S+ on (.+)")  # the trainer's first line


@dataclass
class Cost:
    cpu: float  # user + system seconds of the process and what it waited for
    wall: float
    setting: str  # the trainer's announcement: device, weights, bf16 autocast or not


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_args(out: Path, args, overrides: list[str]) -> list[str]:
    """``maspo train``'s arguments for one shortened study run into ``out``."""
    test_size = [] if args.test_size is None else [f"data.test_size={args.test_size}"]
    return ["train", "--config", str(args.preset_file), "--no-progress",
            f"train.steps={args.steps}", "train.eval_every=0", "train.save_every=0",
            *test_size, f"train.output_dir={out}", *overrides]


def run_once(code: Path, out: Path, args, overrides: list[str]) -> Cost:
    """One shortened study run of the maspo at ``code``; its folder is removed after."""
    command = [sys.executable, "-m", "maspo", *train_args(out, args, overrides)]
    env = dict(os.environ, PYTHONPATH=str(code))
    cpu, wall = children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True)
    cpu, wall = children_cpu() - cpu, time.perf_counter() - wall
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        sys.exit(f"run_cost: the run of {code} failed:\n{done.stderr[-2000:]}")
    found = ANNOUNCE.search(done.stdout)
    return Cost(cpu, wall, found.group(1) if found else "?")


def counted_flops(out: Path, args, overrides: list[str]) -> int:
    """The matmul FLOPs of one more run of this checkout (``bench/count_flops.py``)."""
    command = [sys.executable, str(ROOT / "bench" / "count_flops.py"),
               *train_args(out, args, overrides)]
    done = subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
                          capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        sys.exit(f"run_cost: the counted run failed:\n{done.stderr[-2000:]}")
    return int(json.loads(done.stdout.strip().splitlines()[-1])["flops"])


def floor_rate(args, overrides: list[str]) -> tuple[float, str, int]:
    """This CPU's matmul FLOP/s on the run's model shapes at its precision and threads
    (``maspo.flops.matmul_throughput``), the precision and the threads."""
    sys.path.insert(0, str(ROOT))  # this checkout's maspo, as side A runs it
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from maspo.config import load_config
    from maspo.flops import ModelShape, matmul_throughput
    from maspo.models import resolve_model
    from maspo.precision import resolve_precision

    config = load_config(args.preset_file, overrides)
    precision = resolve_precision(config.train.precision, "cpu")
    threads = config.train.threads or torch.get_num_threads()
    with torch.device("meta"):  # the shapes only, no weights
        model = AutoModelForCausalLM.from_config(
            AutoConfig.from_pretrained(resolve_model(config.model.path)))
    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return matmul_throughput(ModelShape.of(model), dtype, "cpu"), precision, threads


def imported_from(code: Path) -> str:
    """Where ``import maspo`` resolves with ``code`` on PYTHONPATH (checks the set-up)."""
    return subprocess.run([sys.executable, "-c", "import maspo; print(maspo.__file__)"],
                          env=dict(os.environ, PYTHONPATH=str(code)), cwd=code,
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the commit to compare with (B)")
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs (default 3)")
    parser.add_argument("--steps", type=int, default=2, help="training steps per run")
    parser.add_argument("--config", default="study_two_digit",
                        help="this checkout's preset both sides run (default study_two_digit)")
    parser.add_argument("--test-size", type=int, help="held-out prompts (default: the preset's)")
    parser.add_argument("--a-override", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for this checkout (A) only; repeatable")
    parser.add_argument("--floor", action="store_true",
                        help="also count A's matmul FLOPs (one more, slower run) and print "
                             "the A/B its matmuls alone take at this CPU's floor")
    parser.add_argument("overrides", nargs="*", help="section.key=value for both sides")
    args = parser.parse_intermixed_args()  # options may stand among the overrides
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still remove the worktree
    if args.pairs < 1 or args.steps < 1 or (args.test_size is not None and args.test_size < 1):
        parser.error("--pairs, --steps and --test-size must be at least 1")
    preset = ROOT / "maspo" / "presets" / f"{args.config}.yaml"
    if not preset.is_file():
        names = sorted(p.stem for p in preset.parent.glob("*.yaml"))
        print(f"run_cost: --config {args.config!r} is not a preset of this checkout "
              f"({', '.join(names)})", file=sys.stderr)
        raise SystemExit(2)
    with tempfile.TemporaryDirectory(prefix="maspo-run-cost-") as tmp:
        args.preset_file = Path(tmp) / f"{args.config}.yaml"  # read by both sides
        shutil.copyfile(preset, args.preset_file)
        base = Path(tmp) / "base"
        added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                                str(base), args.commit], capture_output=True, text=True)
        if added.returncode != 0:
            print(f"run_cost: cannot check out {args.commit!r}: {added.stderr.strip()}",
                  file=sys.stderr)
            raise SystemExit(2)  # a commit that does not exist: bad input
        try:
            head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
            print(f"A: this checkout ({head}{', with changes' if _dirty() else ''}); "
                  f"B: {args.commit}; preset {args.config}, {args.steps} steps, "
                  f"{args.test_size or 'all its'} held-out prompts evaluated before and after"
                  + (f"; overrides {' '.join(args.overrides)}" if args.overrides else "")
                  + (f"; A only: {' '.join(args.a_override)}" if args.a_override else ""))
            for side, code in (("A", ROOT), ("B", base)):
                where = imported_from(code)
                if not where.startswith(str(code)):
                    sys.exit(f"run_cost: side {side} imports maspo from {where!r}, not {code}")
            costs: dict[str, list[Cost]] = {"A": [], "B": []}
            for pair in range(args.pairs):
                order = ("A", "B") if pair % 2 == 0 else ("B", "A")
                for side in order:
                    code = ROOT if side == "A" else base
                    extra = args.overrides + (args.a_override if side == "A" else [])
                    costs[side].append(run_once(code, Path(tmp) / f"run-{side}-{pair}", args,
                                                extra))
                a, b = costs["A"][-1], costs["B"][-1]
                print(f"pair {pair + 1}: A {a.cpu:7.1f} CPU-s ({a.wall:6.1f} s wall)  "
                      f"B {b.cpu:7.1f} CPU-s ({b.wall:6.1f} s wall)  A/B {a.cpu / b.cpu:.2f}",
                      flush=True)
            if args.floor:
                flops = counted_flops(Path(tmp) / "run-counted", args,
                                      args.overrides + args.a_override)
                rate, precision, threads = floor_rate(args, args.overrides + args.a_override)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(base)], capture_output=True)
    for side in ("A", "B"):
        print(f"{side} ran: {costs[side][0].setting}")
    ratios = [a.cpu / b.cpu for a, b in zip(costs["A"], costs["B"], strict=True)]
    total = sum(c.cpu for c in costs["A"]) / sum(c.cpu for c in costs["B"])
    print(f"CPU-seconds A/B: median of pairs {statistics.median(ratios):.2f}, "
          f"of totals {total:.2f} (pairs: {', '.join(f'{r:.2f}' for r in ratios)})")
    if args.floor:
        seconds, b_median = flops / rate, statistics.median(c.cpu for c in costs["B"])
        print(f"A's matmuls: {flops / 1e12:.2f} TFLOP (counted in one more run of A); at "
              f"this CPU's {precision} floor on the model's shapes ({rate / 1e9:.0f} "
              f"GFLOP/s, {threads} thread{'s' * (threads > 1)}) {seconds:.1f} CPU-s, "
              f"{seconds / b_median:.2f} of B's median run: the lowest A/B here without "
              "less matmul work")


def _dirty() -> bool:
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                             "maspo"], capture_output=True, text=True).stdout
    return bool(status.strip())


if __name__ == "__main__":
    main()
