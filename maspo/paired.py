"""Paired-by-seed statistics for comparing objectives: difference, 95% CI, verdict.

Runs at the same seed share prompts and sampling seeds, so an objective is compared with
the baseline seed by seed: d_s = score(objective, s) - score(baseline, s). The interval
is Student's t over the n paired differences, mean(d) +/- t_{0.975, n-1} * sd(d) / sqrt(n)
(sd with ddof 1). The verdict is "better" when the whole interval is above 0, "worse"
when it is below, and "cannot tell" when it contains 0 or there are fewer than 2 pairs.

The t quantile is computed here (bisection on the CDF, the CDF by Simpson's rule on the
density) rather than taken from scipy, which is not a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95  # two-sided level of every interval
SIMPSON_INTERVALS = 4_000  # even; CDF error < 1e-9 on [0, 50] for every df >= 1
QUANTILE_TOLERANCE = 1e-9  # bisection stops when the bracket is this narrow
QUANTILE_BRACKET = 1e4  # t_{0.975, 1} = 12.7; no quantile used here is beyond this

BETTER, WORSE, CANNOT_TELL = "better", "worse", "cannot tell"


def t_density(x: float, df: int) -> float:
    """Student's t density with ``df`` degrees of freedom."""
    log_norm = (math.lgamma((df + 1) / 2) - math.lgamma(df / 2)
                - 0.5 * math.log(df * math.pi))
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))


def t_cdf(x: float, df: int) -> float:
    """P(T <= x): 1/2 plus the density integrated from 0 to x (Simpson's rule)."""
    if x < 0:
        return 1.0 - t_cdf(-x, df)
    # substitute x = u / (1 - u) on [0, x/(1+x)]: the integrand stays smooth for large x
    end = x / (1.0 + x)
    h = end / SIMPSON_INTERVALS
    total = 0.0
    for i in range(SIMPSON_INTERVALS + 1):
        u = i * h
        value = t_density(u / (1.0 - u), df) / (1.0 - u) ** 2
        total += value * (1 if i in (0, SIMPSON_INTERVALS) else 4 if i % 2 else 2)
    return 0.5 + total * h / 3


def t_quantile(p: float, df: int) -> float:
    """The x with P(T <= x) = p, for 0.5 <= p < 1 and df >= 1 (bisection)."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got p={p}, df={df}")
    low, high = 0.0, QUANTILE_BRACKET
    while high - low > QUANTILE_TOLERANCE:
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class PairedDifference:
    """mean(objective - baseline) over paired seeds, with its CI and verdict."""

    n: int  # paired seeds
    mean: float  # mean difference (NaN with no pair)
    low: float  # CI bounds (NaN with fewer than 2 pairs)
    high: float
    verdict: str  # better | worse | cannot tell

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
    verdict = BETTER if low > 0 else WORSE if high < 0 else CANNOT_TELL
    return PairedDifference(n, mean, low, high, verdict)


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
