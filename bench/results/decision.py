"""The decision a sweep supports: per (model, device), the recommended configuration (strategy, runtime,
precision, batch size, actors), its median steady throughput with a 95% bootstrap interval over repeats, and
its margin over the runner-up — or "no significant difference" where the two intervals overlap. Cells that
cannot be ranked (invalid, failed, or below their quality floor: bench.results.quality) are listed beside
the answer with the reason; noisy cells (CV over 10% between repeats) are ranked but named, since their
interval is wide. Where the answer is not fp32, the fastest ranked fp32 cell is named beside it, with the
speed-up and the agreement that speed costs.

One function (`recommend`) feeds the report's decision table and `segbench recommend`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.results import quality
from bench.results.record import RunRecord
from bench.results.store import read_record

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


def recommend(frame: pd.DataFrame, summary: pd.DataFrame, min_agreement: float | None = None,
              records: Mapping[str, RunRecord] | None = None) -> list[dict]:
    """One decision per (model, device), from ResultStore.frame() and its cell_summary(). `min_agreement`:
    the user's quality floor (else each cell's own or its precision's default). `records`: path → record, as
    ResultStore.records() lists those the frame was built from; a path not among them is read again."""
    if summary.empty:
        return []
    measured = _quality(frame, min_agreement, records or {})
    decisions = []
    for (model, device), cells in summary.groupby(["model", "device"], sort=True):
        ranked, excluded = [], []
        for cell in cells.itertuples():
            agreement, short = measured.get(cell.cell_id, (1.0, None))
            why = _not_ranked(cell) or short
            if why:
                excluded.append({"cell_id": cell.cell_id, "strategy": cell.strategy, "why": why})
                continue
            values = _repeats(frame, cell.cell_id)
            low, high = interval(values)
            ranked.append({"cell_id": cell.cell_id, "strategy": cell.strategy,
                           "runtime": getattr(cell, "runtime", "eager"), "precision": _precision(frame, cell.cell_id),
                           "batch_size": _plain(cell.batch_size), "actors": _plain(cell.actors),
                           "throughput": float(np.median(values)), "ci_low": low, "ci_high": high,
                           "repeats": len(values), "noisy": bool(cell.noisy), "agreement": agreement})
        ranked.sort(key=lambda c: c["throughput"], reverse=True)
        decisions.append({"model": model, "device": device, **_verdict(ranked), "against_fp32": _against_fp32(ranked),
                          "excluded": excluded, "noisy": [c["cell_id"] for c in ranked if c["noisy"]]})
    return decisions


def configuration(cell: dict | None) -> str:
    """A ranked cell's configuration in words ("-" when there is none)."""
    if cell is None:
        return "-"
    runtime, precision = cell.get("runtime", "eager"), cell.get("precision", quality.FP32)
    return (f"{cell['strategy']}{'' if runtime == 'eager' else f' on {runtime}'}"
            f"{'' if precision == quality.FP32 else f' at {precision}'}, batch {cell['batch_size']}, "
            f"{cell['actors']} actor(s)")


def against_fp32(decision: dict) -> str | None:
    """The recommended cell of another precision against the fastest fp32 cell, in one line (None: fp32
    was recommended, or nothing was)."""
    comparison = decision.get("against_fp32")
    if not comparison:
        return None
    precision, fp32, agreement = comparison["precision"], comparison["fp32"], comparison["agreement"]
    costs = f"agreement {agreement:.2%} with fp32 eager" if agreement is not None else "agreement not measured"
    if fp32 is None:
        return f"{precision}: no fp32 cell could be ranked to compare with; {costs}"
    return (f"{precision}: {comparison['speedup']:.2f}× the best fp32 ({configuration(fp32)}, "
            f"{fp32['throughput']:.2f} img/s), {costs}")


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


def _against_fp32(ranked: list[dict]) -> dict | None:
    """The fastest ranked fp32 cell beside a recommended cell of another precision, and the speed-up
    (ratio of medians); None where the recommended cell is fp32 or there is none."""
    if not ranked or ranked[0]["precision"] == quality.FP32:
        return None
    best = ranked[0]
    fp32 = next((c for c in ranked if c["precision"] == quality.FP32), None)
    return {"precision": best["precision"], "fp32": fp32, "agreement": best["agreement"],
            "speedup": best["throughput"] / fp32["throughput"] if fp32 else None}


def _quality(frame: pd.DataFrame, min_agreement: float | None,
             records: Mapping[str, RunRecord]) -> dict[str, tuple[float | None, str | None]]:
    """cell → (its agreement with fp32 eager, why it may not be ranked or None), over its ok repeats: the
    lowest agreement (None if a repeat's is unknown), and the first repeat's reason. An fp32 eager cell is the
    reference (1.0) and needs no record."""
    seen: dict[str, list[tuple[float | None, str | None]]] = {}
    for row in frame[frame["status"] == "ok"].to_dict("records"):
        if quality.is_reference({"runtime": row.get("spec.runtime"), "precision": row.get("spec.precision")}):
            continue
        record = _record_at(row.get("path"), records)
        seen.setdefault(row["cell_id"], []).append(
            (quality.agreement(record), quality.below_floor(record, min_agreement)) if isinstance(record, RunRecord)
            else (None, record))
    return {cell: (None if any(a is None for a, _ in repeats) else min(a for a, _ in repeats),
                   next((why for _, why in repeats if why), None)) for cell, repeats in seen.items()}


def _record_at(path: object, records: Mapping[str, RunRecord]) -> RunRecord | str:
    """The record a frame row was read from, or why it is not at hand (its quality is then unknown)."""
    if path in records:
        return records[path]
    if not isinstance(path, str):
        return "agreement with fp32 eager unknown: the record is not at hand"
    try:
        return read_record(Path(path))
    except (ValueError, OSError) as err:  # a record gone or altered since the frame was read
        return f"agreement with fp32 eager unknown: {path} is not readable ({err})"[:300]


def _precision(frame: pd.DataFrame, cell_id: str) -> str:
    if "spec.precision" not in frame:
        return quality.FP32
    return quality.spec_precision({"precision": frame.loc[frame["cell_id"] == cell_id, "spec.precision"].iloc[0]})


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
