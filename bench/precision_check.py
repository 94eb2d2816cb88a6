"""Does a run at one precision learn the same as at another? Paired by seed, from the run
folders of two comparisons.

Not a test. Each folder is the output folder of one ``maspo compare`` of the same preset
and seeds, one at each precision (for instance the study's fp32 folder and a ``bf16/``
folder run with ``train.precision=auto``); finished runs are read straight from
``runs/<objective>/seed-N/`` (a study still growing has no results.json yet). For the
named objective, runs are paired by seed and their final held-out accuracy (Avg@n of the
run's ``final_eval.json``) and learning-curve area (``maspo.compare.learning_curve_area``
of its ``metrics.jsonl``) are set against each other with ``maspo.paired``: the mean
difference A - B with its 95% interval, the smallest difference those seeds detect (80%
power), the arms' correlation, and the verdict with an equivalence margin (default 0.03):
better / worse when the interval excludes 0, equivalent when it lies inside +-margin,
cannot tell otherwise. Each side's ``train.precision`` (from its runs' saved configs) and
the commits that trained its runs (their ``summary.json``) are printed first.

    python bench/precision_check.py A_FOLDER B_FOLDER [--objective grpo] [--margin 0.03]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maspo.compare import learning_curve_area  # noqa: E402
from maspo.evaluate import verdict_metrics  # noqa: E402
from maspo.objective_specs import parse_variant  # noqa: E402
from maspo.paired import EQUIVALENT, paired_difference, pairing  # noqa: E402
from maspo.run import RunDir  # noqa: E402


def fail(message: str) -> None:
    """Bad input: one sentence on stderr, exit code 2."""
    print(f"precision_check: {message}", file=sys.stderr)
    raise SystemExit(2)


def finished_runs(folder: Path, objective: str) -> dict[int, dict]:
    """seed -> {final, auc, precision, commit} of the objective's finished runs."""
    runs = {}
    for path in sorted((folder / "runs" / parse_variant(objective).slug).glob("seed-*")):
        run = RunDir(path)
        if run.status() != "done" or not run.final_eval.is_file():
            continue  # not finished
        final = json.loads(run.final_eval.read_text())
        scores = verdict_metrics(final["correct"], final["answers"], [1])
        n = len(final["correct"][0])
        config = yaml.safe_load(run.config.read_text())
        runs[int(path.name.removeprefix("seed-"))] = {
            "final": scores[f"avg@{n}"], "n": n, "auc": learning_curve_area(run.read_metrics()),
            "precision": config["train"]["precision"],
            "commit": run.read_summary().maspo_commit}
    if not runs:
        fail(f"{folder}: no finished run of objective {objective!r}")
    return runs


def describe(name: str, folder: Path, runs: dict[int, dict]) -> str:
    precisions = sorted({r["precision"] for r in runs.values()})
    commits = sorted({r["commit"] or "unrecorded" for r in runs.values()})
    return (f"{name}: {folder} (train.precision {', '.join(precisions)}; trained by "
            f"{', '.join(commits)}; seeds {sorted(runs)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="comparison folder A (e.g. the bf16 runs)")
    parser.add_argument("b", type=Path, help="comparison folder B (e.g. the fp32 runs)")
    parser.add_argument("--objective", default="grpo", help="objective spec to pair")
    parser.add_argument("--margin", type=float, default=0.03, help="equivalence margin")
    args = parser.parse_args(argv)
    a, b = finished_runs(args.a, args.objective), finished_runs(args.b, args.objective)
    print(describe("A", args.a, a))
    print(describe("B", args.b, b))
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        fail(f"only {len(seeds)} seed(s) finished on both sides: no interval yet")
    if {a[s]["n"] for s in seeds} != {b[s]["n"] for s in seeds}:
        fail("the two sides score the final with different samples per prompt")
    print(f"objective {args.objective}, paired seeds {seeds}")
    for name in ("final", "auc"):
        arm_a, arm_b = [a[s][name] for s in seeds], [b[s][name] for s in seeds]
        diff = paired_difference(arm_a, arm_b, margin=args.margin)
        shown = diff.verdict + (f" (+-{args.margin:g})" if diff.verdict == EQUIVALENT else "")
        print(f"{name:5s}  A {sum(arm_a) / len(seeds):.4f}  B {sum(arm_b) / len(seeds):.4f}  "
              f"A-B {diff.shown(4)}  detectable {diff.detectable:.4f}  "
              f"r {pairing(arm_a, arm_b).r:+.2f}  verdict {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
