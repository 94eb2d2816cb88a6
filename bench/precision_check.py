"""Does a run at one precision learn the same as at another? Paired by seed, from two
comparison folders.

Not a test. Each folder is the output of one ``maspo compare`` of the same preset and
seeds, one at each precision (for instance the study's fp32 folder and a ``bf16/`` folder
run with ``train.precision=auto``). For the named objective, runs are paired by seed and
their final held-out accuracy (the results' ``avg@n``) and learning-curve area are set
against each other with ``maspo.paired``: the mean difference A - B with its 95% interval,
the smallest difference those seeds detect (80% power), the arms' correlation, and the
verdict with an equivalence margin (default 0.03): better / worse when the interval
excludes 0, equivalent when it lies inside +-margin, cannot tell otherwise. Each side's
``train.precision`` (from its runs' saved configs) and maspo commit are printed first.

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

from maspo.paired import paired_difference, pairing  # noqa: E402


def side(folder: Path, objective: str) -> tuple[dict[int, dict], str, dict]:
    """seed -> run row of ``objective`` (finished runs), the runs' precision, the results."""
    path = folder / "results.json"
    if not path.is_file():
        sys.exit(f"{folder}: no results.json (run maspo compare there first)")
    results = json.loads(path.read_text())
    runs = {r["seed"]: r for r in results["runs"]
            if r["objective"] == objective and r["stopped"] is None and r["failed"] is None}
    if not runs:
        sys.exit(f"{folder}: no finished run of objective {objective!r}")
    precisions = set()
    for run in runs.values():
        config = yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text())
        precisions.add(config["train"]["precision"])
    return runs, ",".join(sorted(precisions)), results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="comparison folder A (e.g. the bf16 runs)")
    parser.add_argument("b", type=Path, help="comparison folder B (e.g. the fp32 runs)")
    parser.add_argument("--objective", default="grpo", help="objective spec to pair")
    parser.add_argument("--margin", type=float, default=0.03, help="equivalence margin")
    args = parser.parse_args(argv)
    a, precision_a, results_a = side(args.a, args.objective)
    b, precision_b, results_b = side(args.b, args.objective)
    print(f"A: {args.a} ({precision_a}, maspo {results_a.get('maspo_commit')})")
    print(f"B: {args.b} ({precision_b}, maspo {results_b.get('maspo_commit')})")
    seeds = sorted(set(a) & set(b))
    print(f"objective {args.objective}, paired seeds {seeds}")
    final_key = f"avg@{results_a['n']}"
    if results_b["n"] != results_a["n"]:
        sys.exit(f"the folders score the final with different n ({results_a['n']} and "
                 f"{results_b['n']}): not comparable")
    for name, key in (("final", final_key), ("curve area", "auc")):
        arm_a = [a[s][key] for s in seeds]
        arm_b = [b[s][key] for s in seeds]
        diff = paired_difference(arm_a, arm_b, margin=args.margin)
        pair = pairing(arm_a, arm_b)
        print(f"{name:10s}  A {sum(arm_a) / len(seeds):.4f}  B {sum(arm_b) / len(seeds):.4f}"
              f"  A-B {diff.shown(4)}  detectable {diff.detectable:.4f}  r {pair.r:+.2f}"
              f"  verdict {diff.verdict}" + (f" (+-{args.margin:g})"
                                             if diff.verdict == "equivalent" else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
