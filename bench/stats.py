"""Statistics of measured values, in one place (no torch, no Ray: tested with plain numbers):
distributions of a run's values, the spread of repeats, and the baseline-vs-candidate test."""

from __future__ import annotations

import numpy as np


def distribution(values: list[float] | np.ndarray) -> dict:
    """count, mean, stdev, min, p50/p90/p95/p99, max; None fields when there are no values."""
    if len(values) == 0:
        return {"count": 0, "mean": None, "stdev": None, "min": None, "p50": None, "p90": None, "p95": None,
                "p99": None, "max": None}
    arr = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99])
    return {"count": int(arr.size), "mean": float(arr.mean()), "stdev": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "min": float(arr.min()), "p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99),
            "max": float(arr.max())}


def series(values: list[float]) -> dict:
    """mean, p95 and peak of a sampled series (utilisation); None fields when it is empty."""
    if not values:
        return {"mean": None, "p95": None, "peak": None}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "p95": float(np.percentile(arr, 95)), "peak": float(arr.max())}


def coefficient_of_variation(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    return float(arr.std(ddof=1) / arr.mean()) if arr.mean() else None


def log_ratio_test(base: np.ndarray, cand: np.ndarray) -> tuple[float, tuple[float, float], float]:
    """Geometric-mean ratio cand/base, its Welch t 95% interval, and Welch's two-sided p on the logs."""
    from scipy import stats

    lb, lc = np.log(base), np.log(cand)
    ratio = float(np.exp(lc.mean() - lb.mean()))
    if np.ptp(lb) == 0 and np.ptp(lc) == 0:  # no spread on either side: the t statistic is undefined
        return ratio, (ratio, ratio), 1.0 if ratio == 1 else 0.0
    result = stats.ttest_ind(lc, lb, equal_var=False)
    low, high = result.confidence_interval(0.95)
    return ratio, (float(np.exp(low)), float(np.exp(high))), float(result.pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error), in the input order."""
    order = np.argsort(p_values)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def one_sided_p(diff: float, se: float, df: float) -> tuple[float, float]:
    """Welch's one-sided p-values for a log ratio `diff` (candidate − baseline) with standard error `se` and
    `df` degrees of freedom: (p against "no slowdown", p against "no speed-up"). No spread (se 0): 0 for
    the side the difference points to, 1 for the other (1 for both when there is no difference)."""
    from scipy import stats

    if se == 0:
        return (0.0 if diff < 0 else 1.0), (0.0 if diff > 0 else 1.0)
    return float(stats.t.cdf(diff / se, df)), float(stats.t.sf(diff / se, df))


def tost(diff: float, se: float, df: float, bound: float) -> float:
    """Two one-sided tests (Schuirmann's TOST) that the log ratio `diff` lies within ±`bound`: the larger
    of the two one-sided p-values, below alpha when both nulls (|true diff| ≥ bound on either side) are
    rejected at alpha."""
    from scipy import stats

    if se == 0:
        return 0.0 if abs(diff) < bound else 1.0
    return float(max(stats.t.sf((diff + bound) / se, df), stats.t.cdf((diff - bound) / se, df)))


def equivalence_reach(diff: float, se: float, df: float, alpha: float) -> float:
    """How far from 0 the log ratio may still be at one-sided confidence 1 − `alpha` on either side: the
    largest |bound| of diff ± t(1 − alpha)·se. `tost` passes at alpha exactly when this is below its bound."""
    from scipy import stats

    half = float(stats.t.ppf(1 - alpha, df)) * se if se else 0.0
    return max(abs(diff - half), abs(diff + half))
