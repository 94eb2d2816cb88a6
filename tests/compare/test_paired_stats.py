"""Paired-by-seed statistics: t quantiles, the CI of a difference against hand-computed
values, verdicts, learning-curve area, and the ratio-distribution figure."""

from __future__ import annotations

import json
import math

import matplotlib.image
import pytest

from maspo.compare import paired_rows
from maspo.paired import (
    BETTER,
    CANNOT_TELL,
    EQUIVALENT,
    WORSE,
    curve_area,
    detectable_difference,
    paired_difference,
    pairs_for_half_width,
    t_quantile,
)
from maspo.plots import plot_ratio_distribution

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("df", "expected"), [(1, 12.706205), (2, 4.302653), (4, 2.776445),
                                              (9, 2.262157), (30, 2.042272)])
def test_t_quantile_matches_the_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)


def test_ci_of_a_paired_difference_matches_hand_computed_values():
    # seeds 0..3: objective 0.50 0.60 0.55 0.65, baseline 0.40 0.45 0.50 0.50
    # d = 0.10 0.15 0.05 0.15; mean 0.1125; sd = sqrt(0.006875 / 3) = 0.0478714
    # half width = t(0.975, 3) * sd / 2 = 3.182446 * 0.0478714 / 2 = 0.0761739
    diff = paired_difference([0.50, 0.60, 0.55, 0.65], [0.40, 0.45, 0.50, 0.50])
    assert diff.n == 4
    assert diff.mean == pytest.approx(0.1125)
    assert diff.low == pytest.approx(0.1125 - 0.0761739, abs=1e-6)
    assert diff.high == pytest.approx(0.1125 + 0.0761739, abs=1e-6)
    assert diff.verdict == BETTER
    assert diff.shown() == "+0.113 [+0.036, +0.189]"

    worse = paired_difference([0.40, 0.45, 0.50, 0.50], [0.50, 0.60, 0.55, 0.65])
    assert (worse.low, worse.high) == pytest.approx((-diff.high, -diff.low))
    assert worse.verdict == WORSE


def test_the_p_value_is_the_paired_t_tests():
    # d = 0.10 0.15 0.05 0.15: t = 0.1125 / (0.0478714 / 2) = 4.70014 with 3 degrees of
    # freedom, whose CDF is 1/2 + (x / (1 + x^2) + atan(x)) / pi at x = t / sqrt(3)
    x = 0.1125 / (0.0478714 / 2) / math.sqrt(3)
    expected = 2 * (0.5 - (x / (1 + x * x) + math.atan(x)) / math.pi)
    diff = paired_difference([0.50, 0.60, 0.55, 0.65], [0.40, 0.45, 0.50, 0.50])
    assert diff.p == pytest.approx(expected, rel=1e-4)
    assert 0.01 < diff.p < 0.05
    same = paired_difference([0.6, 0.7], [0.4, 0.5])  # no spread: the interval is a point
    assert (same.low, same.high, same.p) == (pytest.approx(0.2), pytest.approx(0.2), 0.0)


@pytest.mark.parametrize(("n", "effect_size"), [(5, 1.6819), (10, 0.9960), (30, 0.5292)])
def test_the_detectable_difference_matches_power_tables(n, effect_size):
    # the effect sizes d = delta / sd a two-sided paired t-test at 5% finds with 80% power
    # (Cohen's tables; G*Power gives the same to 3 digits); delta scales with sd
    assert detectable_difference(1.0, n) == pytest.approx(effect_size, abs=2e-3)
    assert detectable_difference(0.05, n) == pytest.approx(0.05 * effect_size, abs=1e-4)
    # the 4-seed table above: sd(d) = 0.0478714; d = 2.1279 for 4 pairs
    diff = paired_difference([0.50, 0.60, 0.55, 0.65], [0.40, 0.45, 0.50, 0.50])
    assert diff.detectable == pytest.approx(2.1279 * 0.0478714, abs=2e-4)
    assert math.isnan(paired_difference([0.9], [0.1]).detectable)
    assert paired_difference([0.6, 0.7], [0.4, 0.5]).detectable == 0.0


def test_verdict_flips_to_cannot_tell_when_the_interval_spans_zero():
    baseline = [0.40, 0.45, 0.50, 0.50]
    clear = paired_difference([0.50, 0.60, 0.55, 0.65], baseline)
    # one seed goes the other way: same mean sign, but the interval now crosses 0
    mixed = paired_difference([0.50, 0.60, 0.35, 0.65], baseline)
    assert clear.verdict == BETTER and clear.low > 0
    assert mixed.mean > 0 and mixed.low < 0 < mixed.high
    assert mixed.verdict == CANNOT_TELL
    single = paired_difference([0.9], [0.1])  # one pair: no interval, no verdict
    assert single.verdict == CANNOT_TELL and math.isnan(single.low)
    assert single.shown() == "+0.800"
    assert paired_difference([], []).shown() == "-"


def test_an_interval_inside_the_margin_is_equivalent_and_one_past_it_cannot_tell():
    baseline = [0.40, 0.45, 0.50, 0.50, 0.42]
    close = paired_difference([0.41, 0.44, 0.51, 0.49, 0.42], baseline, margin=0.03)
    assert -0.03 <= close.low < 0 < close.high <= 0.03 and close.verdict == EQUIVALENT
    # the same interval without a margin, and with a margin it does not fit in
    assert paired_difference([0.41, 0.44, 0.51, 0.49, 0.42], baseline).verdict == CANNOT_TELL
    assert paired_difference([0.41, 0.44, 0.51, 0.49, 0.42], baseline,
                             margin=close.high / 2).verdict == CANNOT_TELL
    # an interval that excludes 0 is better even inside the margin (the rule's order)
    small = paired_difference([0.41, 0.46, 0.51, 0.51, 0.43], baseline, margin=0.03)
    assert 0 < small.low and small.high <= 0.03 and small.verdict == BETTER


def test_curve_area_is_the_trapezoidal_mean_height():
    # steps 0, 4, 12 with accuracies 0.2, 0.6, 0.6: (4 * 0.4 + 8 * 0.6) / 12
    assert curve_area([0, 4, 12], [0.2, 0.6, 0.6]) == pytest.approx(6.4 / 12)
    assert curve_area([5], [0.3]) == 0.3


def _run(objective, seed, final, auc, stopped=None):
    return {"objective": objective, "seed": seed, "stopped": stopped, "avg@2": final,
            "auc": auc}


def test_paired_rows_pair_by_seed_and_drop_unpaired_and_stopped_runs():
    runs = [_run("grpo", 0, 0.4, 0.30), _run("grpo", 1, 0.5, 0.35), _run("grpo", 2, 0.6, 0.4),
            _run("maspo", 1, 0.7, 0.45), _run("maspo", 0, 0.6, 0.40),
            _run("maspo", 2, None, None, stopped="non-finite"), _run("maspo", 3, 0.9, 0.5)]
    [row] = paired_rows(runs, "grpo", "avg@2")
    assert row["objective"] == "maspo" and sorted(row["seeds"]) == [0, 1]
    assert row["final"]["n"] == 2 and row["final"]["mean"] == pytest.approx(0.2)
    assert row["auc"]["mean"] == pytest.approx(0.1)
    # two identical differences give a zero-width interval above 0 (t * 0 = 0)
    assert row["final"]["low"] == pytest.approx(0.2) and row["final"]["verdict"] == BETTER


def _write_run(path, objective, seed, spread):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(json.dumps({"loss": {"name": objective, "params": {}},
                                                  "train": {"seed": seed}}))
    records = []
    for step in range(1, 5):
        record = {"step": step}
        for sign in ("pos", "neg"):
            for q, z in (("q05", -2.0), ("q25", -1.0), ("q50", 0.0), ("q75", 1.0),
                         ("q95", 2.0)):
                record[f"ratio/{sign}/{q}"] = math.exp(z * spread * step)
        records.append(json.dumps(record))
    (path / "metrics.jsonl").write_text("\n".join(records) + "\n")
    return path


def test_ratio_distribution_figure_is_a_valid_png(tmp_path):
    groups = {"grpo": [_write_run(tmp_path / "g0", "grpo", 0, 0.05),
                       _write_run(tmp_path / "g1", "grpo", 1, 0.06)],
              "maspo": [_write_run(tmp_path / "m0", "maspo", 0, 0.2)]}
    out = plot_ratio_distribution(groups, tmp_path / "figures" / "ratios.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 100 and image.shape[1] > 200 and image.std() > 0


def test_pairing_gives_correlation_sds_and_welchs_interval():
    import numpy as np
    from scipy import stats as sps

    from maspo.paired import pairing

    a, b = [0.5, 0.62, 0.7, 0.9, 0.55], [0.4, 0.55, 0.5, 0.6, 0.52]
    p = pairing(a, b)
    assert p.r == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert p.sd_paired == pytest.approx(np.std(np.subtract(a, b), ddof=1))
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    assert p.sd_unpaired == pytest.approx(math.sqrt(va + vb))
    # Welch by hand: Welch-Satterthwaite degrees of freedom, t quantile, mean difference
    se2 = va / 5 + vb / 5
    df = se2 ** 2 / ((va / 5) ** 2 / 4 + (vb / 5) ** 2 / 4)
    half = sps.t.ppf(0.975, df) * math.sqrt(se2)
    diff = np.mean(a) - np.mean(b)
    assert (p.welch_low, p.welch_high) == (pytest.approx(diff - half), pytest.approx(diff + half))
    # var(d) = var(a) + var(b) - 2 cov: positively correlated arms pair below unpaired
    assert p.r > 0 and p.sd_paired < p.sd_unpaired


def test_pairing_of_too_few_or_flat_values_is_nan_not_an_error():
    from maspo.paired import pairing

    assert math.isnan(pairing([0.5], [0.4]).sd_paired)
    flat = pairing([0.0, 0.0], [0.0, 0.0])
    assert flat.sd_paired == 0 and math.isnan(flat.r) and math.isnan(flat.welch_low)


@pytest.mark.parametrize("sd, width", [(0.073, 0.03), (0.151, 0.05), (0.01, 0.03), (0.5, 0.01)])
def test_pairs_for_a_half_width_are_the_fewest_whose_interval_is_that_narrow(sd, width):
    from scipy import stats

    def half_width(n: int) -> float:  # the paired t interval's, at that spread
        return float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)

    n = pairs_for_half_width(sd, width)
    assert half_width(n) <= width and (n == 2 or half_width(n - 1) > width)


def test_pairs_for_a_half_width_without_a_spread():
    assert pairs_for_half_width(0.0, 0.03) == 2
    assert pairs_for_half_width(math.nan, 0.03) is None
    assert pairs_for_half_width(1.0, 1e-4, most=1000) is None
