"""Paired-by-seed statistics for comparing objectives: difference, 95% CI, verdict.

Runs at the same seed share prompts and sampling seeds, so an objective is compared with
the baseline seed by seed: d_s = score(objective, s) - score(baseline, s). The interval
is Student's t over the n paired differences, mean(d) +/- t_{0.975, n-1} * sd(d) / sqrt(n)
(sd with ddof 1), and the p-value that of the paired t-test, both from
``scipy.stats.ttest_1samp``. The verdict is "better" when the whole interval is above 0,
"worse" when it is below, "equivalent" when an equivalence margin m was named and the
interval contains 0 but lies inside [-m, +m], and "cannot tell" otherwise (or with fewer
than 2 pairs).

What a study could have seen: ``detectable`` is the smallest true mean difference that
the same two-sided test (level 5%) finds with 80% power, given the seeds' spread sd(d):
the delta with P(|T'| > t_{0.975, n-1}) = 0.8, T' noncentral t with n - 1 degrees of
freedom and noncentrality delta * sqrt(n) / sd(d) (``scipy.stats.nct``). It is about 1.3
to 1.4 times the interval's half width for 4 to 10 seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import optimize, stats

CONFIDENCE = 0.95  # two-sided level of every interval
POWER = 0.8  # the power at which ``detectable`` is quoted

BETTER, WORSE, CANNOT_TELL = "better", "worse", "cannot tell"
EQUIVALENT = "equivalent"  # inside the named margin on both sides (see verdict_of)


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
    verdict: str  # better | worse | equivalent | cannot tell
    p: float = math.nan  # two-sided paired t-test p-value (NaN with fewer than 2 pairs)
    detectable: float = math.nan  # smallest |difference| found with 80% power (see above)

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN with fewer than 2 pairs)."""
        return (self.high - self.low) / 2

    def shown(self, digits: int = 3) -> str:
        """``"+0.040 [-0.010, +0.090]"``; the mean alone for one pair; ``"-"`` for none."""
        if self.n == 0:
            return "-"
        if math.isnan(self.low):
            return f"{self.mean:+.{digits}f}"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def verdict_of(low: float, high: float, margin: float | None = None) -> str:
    """better / worse when the interval [low, high] excludes 0; equivalent when a margin
    is named and the interval lies inside [-margin, +margin]; else cannot tell."""
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    if margin is not None and -margin <= low and high <= margin:
        return EQUIVALENT
    return CANNOT_TELL


def paired_difference(objective: Sequence[float], baseline: Sequence[float],
                      confidence: float = CONFIDENCE, margin: float | None = None
                      ) -> PairedDifference:
    """Mean of ``objective[i] - baseline[i]`` with its Student-t interval and verdict
    (``verdict_of``, with the equivalence ``margin`` when one is named)."""
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
    if sd > 0:
        test = stats.ttest_1samp(diffs, 0.0)
        interval = test.confidence_interval(confidence)
        low, high, p = float(interval.low), float(interval.high), float(test.pvalue)
    else:  # every pair differs by the same amount: no spread to test against
        low = high = mean
        p = 1.0 if mean == 0 else 0.0
    return PairedDifference(n, mean, low, high, verdict_of(low, high, margin), p,
                            detectable_difference(sd, n, 1 - confidence))


@dataclass(frozen=True)
class Pairing:
    """Whether pairing by seed paid: the two arms' correlation over the paired seeds, the
    sd of the paired differences against the sd a difference of two unpaired runs would
    have (sqrt(sd_objective^2 + sd_baseline^2); var(d) = that minus 2 cov), and Welch's
    95% interval, the one to read when pairing does not pay (r <= 0)."""

    r: float  # Pearson correlation of the arms (NaN with fewer than 3 pairs or no spread)
    sd_paired: float  # sd(objective - baseline), ddof 1
    sd_unpaired: float  # sqrt(var(objective) + var(baseline)), ddof 1
    welch_low: float  # Welch's interval for mean(objective) - mean(baseline)
    welch_high: float


def pairing(objective: Sequence[float], baseline: Sequence[float],
            confidence: float = CONFIDENCE) -> Pairing:
    """The ``Pairing`` of two arms given seed by seed (NaN where too few values)."""
    n = len(objective)
    if n < 2:
        return Pairing(math.nan, math.nan, math.nan, math.nan, math.nan)
    a, b = [float(x) for x in objective], [float(x) for x in baseline]
    var_a, var_b = statistics.variance(a), statistics.variance(b)
    sd_paired = statistics.stdev([x - y for x, y in zip(a, b, strict=True)])
    r = math.nan
    if n >= 3 and var_a > 0 and var_b > 0:
        r = statistics.correlation(a, b)
    low = high = math.nan
    if var_a + var_b > 0:
        interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
        low, high = float(interval.low), float(interval.high)
    return Pairing(r, sd_paired, math.sqrt(var_a + var_b), low, high)


def detectable_difference(sd: float, n: int, alpha: float = 1 - CONFIDENCE,
                          power: float = POWER) -> float:
    """Smallest true mean of n paired differences with spread ``sd`` that the two-sided
    paired t-test at level ``alpha`` detects with probability ``power`` (0 when sd is 0,
    NaN with fewer than 2 pairs)."""
    if n < 2:
        return math.nan
    if sd == 0:
        return 0.0
    df, crit = n - 1, t_quantile(1 - alpha / 2, n - 1)

    def shortfall(delta: float) -> float:
        nc = delta * math.sqrt(n) / sd
        wrong_tail = float(stats.nct.cdf(-crit, df, nc))  # < 1e-7 where scipy gives NaN
        return float(stats.nct.sf(crit, df, nc)) + (
            0.0 if math.isnan(wrong_tail) else wrong_tail) - power

    top = sd / math.sqrt(n) * (crit + t_quantile(power, df)) * 4  # power(top) > power
    return float(optimize.brentq(shortfall, 0.0, top, xtol=1e-10 * sd))


def pairs_for_half_width(sd: float, half_width: float, confidence: float = CONFIDENCE,
                         most: int = 100_000) -> int | None:
    """The fewest pairs whose Student-t interval has a half-width of at most
    ``half_width`` when their differences spread by ``sd``: what a sequential study still
    needs if the spread stays as it is (None: sd unknown (NaN), or more than ``most``)."""
    if math.isnan(sd):
        return None
    z = float(stats.norm.ppf((1 + confidence) / 2))
    n = max(2, math.ceil((z * sd / half_width) ** 2))  # t > z: no fewer than this
    while n <= most:
        if t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n) <= half_width:
            return n
        n += 1
    return None


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
