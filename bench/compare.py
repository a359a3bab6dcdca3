"""Baseline vs candidate: match cells by id, compare throughput with a statistical test and a threshold.
Pure (JSON records in, a verdict per cell out): no torch, no Ray.

Samples per cell: the steady throughput of each repeat (driver clock, bench.metrics) — what the
user gets, dispatch, queueing and transfer included. Per-batch worker service rates are not used:
they leave those out. The test is Mann–Whitney U (two-sided; no normality assumed); it cannot reach
p < 0.05 with fewer than 4 repeats a side, so nightly runs at least 5. The ratio is
median(candidate) / median(baseline) with a bootstrap 95% interval.
A cell regresses when the ratio is below 1 − threshold *and* the test rejects equality at `alpha`;
improvements mirror that. Too few samples for a test: the threshold alone decides, and the table says so.
Invalid cells (too short a steady state) on either side are reported as such and never gate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.records import iter_record_paths, read_record

MIN_SAMPLES_FOR_TEST = 3


@dataclass
class CellComparison:
    cell_id: str
    label: str
    verdict: str  # regression | improvement | unchanged | missing | new | failed | invalid
    baseline: float | None = None
    candidate: float | None = None
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    samples: str = ""
    note: str = ""


@dataclass
class Comparison:
    cells: list[CellComparison]
    baseline_machines: set[str] = field(default_factory=set)
    candidate_machines: set[str] = field(default_factory=set)

    @property
    def machine_mismatch(self) -> bool:
        return self.baseline_machines != self.candidate_machines

    @property
    def regressions(self) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict in ("regression", "failed")]


def load_cells(paths: list[Path]) -> dict[str, list[dict]]:
    """cell id → its records (the newest per repeat)."""
    newest: dict[tuple[str, int], dict] = {}
    for path in iter_record_paths(paths):
        try:
            record = read_record(path)
        except (ValueError, json.JSONDecodeError):
            continue
        key = (record["cell_id"], record.get("repeat", 0))
        if key not in newest or record.get("started_at", "") > newest[key].get("started_at", ""):
            newest[key] = record
    cells: dict[str, list[dict]] = defaultdict(list)
    for (cell_id, _), record in sorted(newest.items()):
        cells[cell_id].append(record)
    return cells


def _label(record: dict) -> str:
    s = record["spec"]
    return f"{s['strategy']} {s['model']} {s['device']} bs{s['batch_size']} a{s['actors']}"


def samples(records: list[dict]) -> np.ndarray:
    """Each ok repeat's steady throughput."""
    return np.array([r["metrics"]["throughput_steady"] for r in records
                     if r["status"] == "ok" and r["metrics"].get("throughput_steady")])


def _invalid(records: list[dict]) -> str | None:
    reasons = {"; ".join(r["metrics"].get("invalid_reasons") or ["recorded before validity was checked"])
               for r in records if r["status"] == "ok" and not r["metrics"].get("valid")}
    return " | ".join(sorted(reasons)) or None


def compare_cell(base: list[dict], cand: list[dict], threshold: float, alpha: float) -> CellComparison:
    from scipy import stats

    label = _label((cand or base)[0])
    cell_id = (cand or base)[0]["cell_id"]
    if not base:
        return CellComparison(cell_id, label, "new", note="not in the baseline")
    if not cand:
        return CellComparison(cell_id, label, "missing", note="not in the candidate")
    if all(r["status"] != "ok" for r in cand):
        return CellComparison(cell_id, label, "failed", note=cand[-1].get("error") or cand[-1]["status"])
    b, c = samples(base), samples(cand)
    kind = f"{len(b)}/{len(c)} repeats"
    for side, records in (("baseline", base), ("candidate", cand)):
        if reason := _invalid(records):
            return CellComparison(cell_id, label, "invalid", samples=kind, note=f"{side} invalid: {reason}")
    if len(b) == 0 or len(c) == 0:
        return CellComparison(cell_id, label, "failed" if len(c) == 0 else "new", samples=kind, note="no samples")
    ratio = float(np.median(c) / np.median(b))
    p_value, ci, note = None, None, ""
    if len(b) >= MIN_SAMPLES_FOR_TEST and len(c) >= MIN_SAMPLES_FOR_TEST:
        p_value = float(stats.mannwhitneyu(c, b, alternative="two-sided").pvalue)
        boot = stats.bootstrap((b, c), lambda x, y: np.median(y) / np.median(x), vectorized=False,
                               n_resamples=1000, method="percentile", random_state=0)
        ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    else:
        note = "too few samples for a test: threshold only"
    significant = p_value is None or p_value < alpha
    if ratio < 1 - threshold and significant:
        verdict = "regression"
    elif ratio > 1 + threshold and significant:
        verdict = "improvement"
    else:
        verdict = "unchanged"
    return CellComparison(cell_id, label, verdict, float(np.median(b)), float(np.median(c)), ratio, ci, p_value,
                          kind, note)


def compare(baseline: list[Path], candidate: list[Path], threshold: float = 0.05, alpha: float = 0.05) -> Comparison:
    base, cand = load_cells(baseline), load_cells(candidate)
    cells = [compare_cell(base.get(cell_id, []), cand.get(cell_id, []), threshold, alpha)
             for cell_id in sorted(set(base) | set(cand))]
    machines = lambda cells: {r["environment"].get("fingerprint") for rs in cells.values() for r in rs}  # noqa: E731
    return Comparison(cells, machines(base), machines(cand))
