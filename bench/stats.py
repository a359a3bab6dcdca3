"""Summary statistics of measured values (no torch, no Ray: tested with plain numbers)."""

from __future__ import annotations

import numpy as np


def distribution(values: list[float]) -> dict:
    """count, mean, stdev, min, p50/p90/p95/p99, max; None fields when there are no values."""
    if not values:
        return {"count": 0, "mean": None, "stdev": None, "min": None, "p50": None, "p90": None, "p95": None,
                "p99": None, "max": None}
    arr = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99])
    return {"count": int(arr.size), "mean": float(arr.mean()), "stdev": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "min": float(arr.min()), "p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99),
            "max": float(arr.max())}


def coefficient_of_variation(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=float)
    return float(arr.std(ddof=1) / arr.mean()) if arr.mean() else None
