"""The decision a sweep supports: per (model, device), the recommended configuration (strategy, runtime,
batch size, actors), its
median steady throughput with a 95% bootstrap interval over repeats, and its margin over the
runner-up — or "no significant difference" where the two intervals overlap. Cells that cannot be
ranked (invalid, failed) are listed beside the answer with the reason; noisy cells (CV over 10%
between repeats) are ranked but named, since their interval is wide.

One function (`recommend`) feeds the report's decision table and `segbench recommend`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


def interval(values: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile-bootstrap interval of the median; None bounds with fewer than two repeats."""
    if len(values) < 2:
        return None, None
    if len(set(values)) == 1:
        return values[0], values[0]
    result = stats.bootstrap((np.asarray(values, dtype=float),), np.median, confidence_level=CONFIDENCE,
                             n_resamples=resamples, method="percentile", random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def recommend(frame: pd.DataFrame, summary: pd.DataFrame) -> list[dict]:
    """One decision per (model, device), from ResultStore.frame() and its cell_summary()."""
    if summary.empty:
        return []
    decisions = []
    for (model, device), cells in summary.groupby(["model", "device"], sort=True):
        ranked, excluded = [], []
        for cell in cells.itertuples():
            why = _not_ranked(cell)
            if why:
                excluded.append({"cell_id": cell.cell_id, "strategy": cell.strategy, "why": why})
                continue
            values = _repeats(frame, cell.cell_id)
            low, high = interval(values)
            ranked.append({"cell_id": cell.cell_id, "strategy": cell.strategy,
                           "runtime": getattr(cell, "runtime", "eager"), "batch_size": _plain(cell.batch_size),
                           "actors": _plain(cell.actors), "throughput": float(np.median(values)), "ci_low": low,
                           "ci_high": high, "repeats": len(values), "noisy": bool(cell.noisy)})
        ranked.sort(key=lambda c: c["throughput"], reverse=True)
        decisions.append({"model": model, "device": device, **_verdict(ranked), "excluded": excluded,
                          "noisy": [c["cell_id"] for c in ranked if c["noisy"]]})
    return decisions


def configuration(cell: dict | None) -> str:
    """A ranked cell's configuration in words ("-" when there is none)."""
    if cell is None:
        return "-"
    runtime = cell.get("runtime", "eager")
    return (f"{cell['strategy']}{'' if runtime == 'eager' else f' on {runtime}'}, batch {cell['batch_size']}, "
            f"{cell['actors']} actor(s)")


def with_interval(cell: dict | None) -> str:
    """Median steady throughput and its interval ("-" bounds with one repeat)."""
    if cell is None:
        return "-"
    low, high = (f"{v:.2f}" if v is not None else "-" for v in (cell["ci_low"], cell["ci_high"]))
    return f"{cell['throughput']:.2f} [{low}, {high}]"


def _not_ranked(cell) -> str | None:
    if cell.status != "ok" or cell.throughput is None or cell.throughput != cell.throughput:
        return f"{cell.status}: {cell.error}" if cell.error else str(cell.status)
    if not cell.valid:
        return f"invalid: {cell.invalid_reason}"
    return None


def _plain(value):
    """numpy scalars from pandas as plain Python values (for JSON)."""
    return value.item() if hasattr(value, "item") else value


def _repeats(frame: pd.DataFrame, cell_id: str) -> list[float]:
    rows = frame[(frame["cell_id"] == cell_id) & (frame["status"] == "ok")]
    return [float(v) for v in rows["throughput_steady"].dropna()]


def _verdict(ranked: list[dict]) -> dict:
    if not ranked:
        return {"recommended": None, "runner_up": None, "margin": None, "verdict": "nothing rankable"}
    best = ranked[0]
    if len(ranked) == 1:
        return {"recommended": best, "runner_up": None, "margin": None, "verdict": "the only rankable cell"}
    second = ranked[1]
    margin = best["throughput"] / second["throughput"] - 1
    if best["ci_low"] is None or second["ci_high"] is None:
        verdict = "no interval (one repeat): run more repeats"
    elif best["ci_low"] > second["ci_high"]:
        verdict = "significant (95% intervals apart)"
    else:
        verdict = "no significant difference (95% intervals overlap)"
    return {"recommended": best, "runner_up": second, "margin": margin, "verdict": verdict}
