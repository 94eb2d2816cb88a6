"""Paired-by-seed statistics for comparing objectives: difference, 95% CI, verdict.

Runs at the same seed share prompts and sampling seeds, so an objective is compared with
the baseline seed by seed: d_s = score(objective, s) - score(baseline, s). The interval
is Student's t over the n paired differences, mean(d) +/- t_{0.975, n-1} * sd(d) / sqrt(n)
(sd with ddof 1), and the p-value that of the paired t-test (``scipy.stats``). The
verdict is "better" when the whole interval is above 0, "worse" when it is below, and
"cannot tell" when it contains 0 or there are fewer than 2 pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95  # two-sided level of every interval

BETTER, WORSE, CANNOT_TELL = "better", "worse", "cannot tell"


def t_quantile(p: float, df: int) -> float:
    """The x with P(T <= x) = p for Student's t with ``df`` degrees of freedom."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    return float(stats.t.ppf(p, df))


@dataclass(frozen=True)
class PairedDifference:
    """mean(objective - baseline) over paired seeds, with its CI and verdict."""

    n: int  # paired seeds
    mean: float  # mean difference (NaN with no pair)
    low: float  # CI bounds (NaN with fewer than 2 pairs)
    high: float
    verdict: str  # better | worse | cannot tell
    p: float = math.nan  # two-sided paired t-test p-value (NaN with fewer than 2 pairs)

    def shown(self, digits: int = 3) -> str:
        """``"+0.040 [-0.010, +0.090]"``; the mean alone for one pair; ``"-"`` for none."""
        if self.n == 0:
            return "-"
        if math.isnan(self.low):
            return f"{self.mean:+.{digits}f}"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_difference(objective: Sequence[float], baseline: Sequence[float],
                      confidence: float = CONFIDENCE) -> PairedDifference:
    """Mean of ``objective[i] - baseline[i]`` with its Student-t interval and verdict."""
    if len(objective) != len(baseline):
        raise ValueError(f"got {len(objective)} objective and {len(baseline)} baseline values")
    diffs = [a - b for a, b in zip(objective, baseline, strict=True)]
    n = len(diffs)
    if n == 0:
        return PairedDifference(0, math.nan, math.nan, math.nan, CANNOT_TELL)
    mean = sum(diffs) / n
    if n < 2:
        return PairedDifference(1, mean, math.nan, math.nan, CANNOT_TELL)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if sd > 0:
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    else:  # every pair differs by the same amount: no spread to test against
        p = 1.0 if mean == 0 else 0.0
    verdict = BETTER if low > 0 else WORSE if high < 0 else CANNOT_TELL
    return PairedDifference(n, mean, low, high, verdict, p)


def curve_area(steps: Sequence[int], values: Sequence[float]) -> float:
    """Area under a learning curve divided by its step span: the curve's mean height,
    trapezoidal between logged points (in accuracy units; higher = learned sooner)."""
    if len(steps) != len(values) or not steps:
        raise ValueError("a learning curve needs as many values as steps, at least one")
    if len(steps) == 1:
        return float(values[0])
    area = sum((steps[i + 1] - steps[i]) * (values[i] + values[i + 1]) / 2
               for i in range(len(steps) - 1))
    return area / (steps[-1] - steps[0])
