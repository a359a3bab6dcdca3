"""Baseline vs candidate: match cells by id, compare throughput with a statistical test and a threshold.
Pure (JSON records in, a verdict per cell out): no torch, no Ray.

Samples per cell: the steady throughput of each repeat when both sides have at least 5 repeats;
otherwise the per-batch service rates (images / seconds a worker spent on the batch) of all steady
batches, which are plentiful even in a single run. The test is Mann–Whitney U (two-sided; no
normality assumed). The ratio is median(candidate) / median(baseline) with a bootstrap 95% interval.
A cell regresses when the ratio is below 1 − threshold *and* the test rejects equality at `alpha`;
improvements mirror that. Too few samples for a test: the threshold alone decides, and the table says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.records import iter_record_paths, read_record

# Mann–Whitney cannot reach p < 0.05 with fewer than 4 samples a side (3 vs 3: p ≥ 0.1), so repeat-level
# samples need 5 repeats; below that, per-batch rates pooled over the repeats give the test its power.
MIN_REPEATS_FOR_REPEAT_SAMPLES = 5


@dataclass
class CellComparison:
    cell_id: str
    label: str
    verdict: str  # regression | improvement | unchanged | missing | new | failed
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


def samples(records: list[dict], per_repeat: bool) -> np.ndarray:
    ok = [r for r in records if r["status"] == "ok"]
    if per_repeat:
        return np.array([r["metrics"]["throughput_steady"] for r in ok if r["metrics"].get("throughput_steady")])
    rates = []
    for r in ok:
        per_worker: dict[str, int] = defaultdict(int)
        warmup = r["spec"].get("warmup_batches", 1)
        for b in sorted(r.get("batches", []), key=lambda b: b["completed"]):
            per_worker[b["worker"]] += 1
            if per_worker[b["worker"]] > warmup and b["ended"] > b["started"]:
                rates.append(b["images"] / (b["ended"] - b["started"]))
    return np.array(rates)


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
    per_repeat = min(len(base), len(cand)) >= MIN_REPEATS_FOR_REPEAT_SAMPLES
    b, c = samples(base, per_repeat), samples(cand, per_repeat)
    kind = f"{len(b)}/{len(c)} {'repeats' if per_repeat else 'batches'}"
    if len(b) == 0 or len(c) == 0:
        return CellComparison(cell_id, label, "failed" if len(c) == 0 else "new", samples=kind, note="no samples")
    ratio = float(np.median(c) / np.median(b))
    p_value, ci, note = None, None, ""
    if len(b) >= 3 and len(c) >= 3:
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
