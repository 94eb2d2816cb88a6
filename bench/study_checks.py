"""Secondary readings of a finished paired comparison, from its committed files.

Not a test, and not the study's verdict (that is ``results.md``, by the plan's rule). For
one objective against the baseline, over the seeds both finished: each arm's mean, how
many seeds the difference is negative / positive in, the Wilcoxon signed-rank p-value
(``scipy.stats.wilcoxon``), the paired 95% interval without the seeds where either arm
ended below its step-0 score (a collapse), and the median policy entropy by step of each
arm (``entropy`` in each run's ``metrics.jsonl``: the rollout's mean token entropy).

    python bench/study_checks.py docs/results/study-two-digit [--objective maspo] [--baseline grpo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from maspo.errors import UserError  # noqa: E402
from maspo.paired import paired_difference  # noqa: E402
from maspo.run import RunDir  # noqa: E402

METRICS = {"auc": "curve area", "avg@1": "final"}


def fail(message: str) -> None:
    """Bad input: one sentence on stderr, exit code 2."""
    print(f"study_checks: {message}", file=sys.stderr)
    raise SystemExit(2)


def entropy_by_step(run_dir: Path) -> dict[int, float]:
    """step -> the rollout's mean token entropy, from the run's metrics.jsonl."""
    return {record["step"]: record["entropy"] for record in RunDir(run_dir).read_metrics()
            if "entropy" in record and "step" in record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a comparison's folder (results.json, runs/)")
    parser.add_argument("--objective", default="maspo")
    parser.add_argument("--baseline", default="grpo")
    args = parser.parse_args()
    results = args.folder / "results.json"
    if not results.is_file():
        fail(f"{str(results)!r} does not exist (run maspo compare first)")
    runs = {(r["objective"], r["seed"]): r for r in json.loads(results.read_text())["runs"]
            if r.get("avg@1") is not None}
    a, b = args.objective, args.baseline
    seeds = sorted(s for (o, s) in runs if o == a and (b, s) in runs)
    if len(seeds) < 3:
        fail(f"{a} and {b} share {len(seeds)} finished seeds; need 3")
    collapsed = [s for s in seeds if runs[(a, s)]["gain"] < 0 or runs[(b, s)]["gain"] < 0]
    print(f"{a} - {b}, {len(seeds)} paired seeds; collapsed (an arm below its step 0): "
          f"{collapsed or 'none'}")
    kept = [s for s in seeds if s not in collapsed]
    for key, name in METRICS.items():
        arm_a, arm_b = ([runs[(o, s)][key] for s in seeds] for o in (a, b))
        x = np.subtract(arm_a, arm_b)
        line = (f"{name:10s} {a} {np.mean(arm_a):.3f}  {b} {np.mean(arm_b):.3f}  difference "
                f"< 0 in {(x < 0).sum()}, > 0 in {(x > 0).sum()} of {len(x)}  "
                f"Wilcoxon p {stats.wilcoxon(x).pvalue:.3f}")
        if len(kept) >= 3:
            without = paired_difference([runs[(a, s)][key] for s in kept],
                                        [runs[(b, s)][key] for s in kept])
            line += f"  without collapsed: {without.shown()}"
        print(line)
    for objective in (b, a):
        by_step: dict[int, list[float]] = {}
        for s in seeds:  # runs/<objective>/seed-<s> of this folder
            run_dir = args.folder.joinpath(*Path(runs[(objective, s)]["run_dir"]).parts[-3:])
            try:
                steps = entropy_by_step(run_dir)
            except UserError as err:  # no metrics.jsonl, or a line that is not JSON
                fail(str(err))
            for step, value in steps.items():
                by_step.setdefault(step, []).append(value)
        shown = " ".join(f"{step}:{statistics.median(v):.2f}"
                         for step, v in sorted(by_step.items()))
        print(f"median entropy by step, {objective:6s} {shown}")


if __name__ == "__main__":
    main()
