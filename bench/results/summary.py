"""Per-cell summaries across repeats (pandas; no torch, no Ray): median throughput, coefficient of
variation, a noisy flag, and status — used by the sweep's closing table and by reports."""

from __future__ import annotations

import pandas as pd

from bench.stats import coefficient_of_variation

SPEC_COLUMNS = ["spec.strategy", "spec.model", "spec.device", "spec.batch_size", "spec.actors"]


def cell_summary(frame: pd.DataFrame, noise_cv: float = 0.10) -> pd.DataFrame:
    """One row per cell, from ResultStore.frame() (the newest record per repeat): medians over its ok
    repeats, CV of steady throughput, noisy flag, validity, failures."""
    if frame.empty:
        return pd.DataFrame()
    rows = []
    for cell_id, group in frame.groupby("cell_id", sort=False):
        ok = group[group["status"] == "ok"]
        tput = ok["throughput_steady"].dropna() if "throughput_steady" in ok else pd.Series(dtype=float)
        cv = coefficient_of_variation(list(tput))
        first = group.iloc[0]
        valid = ok["valid"].fillna(False).astype(bool) if "valid" in ok else pd.Series(False, index=ok.index)
        reasons = ok["invalid_reason"].dropna() if "invalid_reason" in ok else pd.Series(dtype=str)
        rows.append({
            "cell_id": cell_id,
            **{c.removeprefix("spec."): first[c] for c in SPEC_COLUMNS if c in group},
            "runtime": _runtime(first),
            "repeats": len(group), "ok": len(ok),
            "status": "ok" if len(ok) == len(group) else ("failed" if ok.empty else "partial"),
            "error": None if ok.shape[0] == len(group) else "; ".join(sorted(set(group["error"].dropna()))),
            "throughput": float(tput.median()) if len(tput) else None,
            "cv": cv,
            "noisy": bool(cv is not None and cv > noise_cv),
            # Valid only when every ok repeat had a steady state long enough (bench.measure.metrics).
            "valid": bool(len(ok)) and bool(valid.all()),
            "invalid_reason": "; ".join(sorted(set(reasons))) or (None if valid.all() else
                                                                  "recorded before validity was checked"),
            "throughput_e2e": _median(ok, "throughput_end_to_end"),
            "latency_p95_s": _median(ok, "latency_p95_s"),
            "cpu_tree_mean": _median(ok, "cpu_tree_mean"),
            "rss_tree_peak": _median(ok, "rss_tree_peak"),
        })
    return pd.DataFrame(rows)


def _runtime(row) -> str:
    """The cell's runtime; records from before the runtime axis ran eager."""
    value = row.get("spec.runtime")
    return value if isinstance(value, str) else "eager"


def measured(summary: pd.DataFrame) -> pd.DataFrame:
    """Cells whose throughput may be ranked, compared or plotted: measured and valid."""
    if summary.empty:
        return summary
    return summary[summary["throughput"].notna() & summary["valid"].astype(bool)]


def _median(frame: pd.DataFrame, column: str):
    if column not in frame or frame[column].dropna().empty:
        return None
    return float(frame[column].dropna().median())
