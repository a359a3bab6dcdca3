"""Baseline vs candidate: match cells by id, compare throughput with a statistical test and a threshold.
Pure (JSON records in, a verdict per cell out): no torch, no Ray.

Samples per cell: the steady throughput of each repeat (driver clock, bench.measure.metrics) — what the
user gets, dispatch, queueing and transfer included. Per-batch worker service rates are not used:
they leave those out.

Statistics are on log throughput, so a change is a ratio: the ratio is the geometric mean of the
candidate's repeats over the baseline's, with a Welch t 95% interval, and the test is Welch's t-test
(two-sided). The p-values of all cells are Holm-adjusted together, so the chance that an unchanged
tree fails the gate stays below `alpha` however many cells the sweep has. Mann–Whitney U was used
before: with 5 repeats a side its smallest p is 0.008, so no cell of a 9-cell sweep could ever pass a
family-wise correction, while uncorrected it flagged one noise cell in a few nightly runs.
A cell regresses when the ratio is below 1 − threshold *and* the adjusted p is below `alpha`;
improvements mirror that. Too few samples for a test: the threshold alone decides, and the table says so.
Invalid cells (too short a steady state) on either side are reported as such and never gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.measure.stats import holm, log_ratio_test
from bench.results.record import RunRecord
from bench.results.store import ResultStore


@dataclass
class CellComparison:
    cell_id: str
    label: str
    verdict: str  # regression | improvement | unchanged | missing | new | failed | invalid
    baseline: float | None = None  # geometric mean of the repeats' steady img/s
    candidate: float | None = None
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None  # Welch's t-test on log throughput
    p_adjusted: float | None = None  # Holm-adjusted over every tested cell of the comparison
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


def _label(record: RunRecord) -> str:
    s = record.spec
    return f"{s['strategy']} {s['model']} {s['device']} bs{s['batch_size']} a{s['actors']}"


def samples(records: list[RunRecord]) -> np.ndarray:
    """Each ok repeat's steady throughput."""
    return np.array([r.metrics["throughput_steady"] for r in records if r.ok and r.metrics.get("throughput_steady")])


def _invalid(records: list[RunRecord]) -> str | None:
    reasons = {"; ".join(r.metrics.get("invalid_reasons") or ["recorded before validity was checked"])
               for r in records if r.ok and not r.metrics.get("valid")}
    return " | ".join(sorted(reasons)) or None


MIN_SAMPLES_FOR_TEST = 3


def compare_cell(base: list[RunRecord], cand: list[RunRecord]) -> CellComparison:
    """A cell's comparison; the verdict of a tested cell waits for the Holm adjustment (`decide`)."""
    label = _label((cand or base)[0])
    cell_id = (cand or base)[0].cell_id
    if not base:
        return CellComparison(cell_id, label, "new", note="not in the baseline")
    if not cand:
        return CellComparison(cell_id, label, "missing", note="not in the candidate")
    if not any(r.ok for r in cand):
        return CellComparison(cell_id, label, "failed", note=cand[-1].error or cand[-1].status)
    b, c = samples(base), samples(cand)
    kind = f"{len(b)}/{len(c)} repeats"
    for side, records in (("baseline", base), ("candidate", cand)):
        if reason := _invalid(records):
            return CellComparison(cell_id, label, "invalid", samples=kind, note=f"{side} invalid: {reason}")
    if len(b) == 0 or len(c) == 0:
        return CellComparison(cell_id, label, "failed" if len(c) == 0 else "new", samples=kind, note="no samples")
    geo_b, geo_c = float(np.exp(np.log(b).mean())), float(np.exp(np.log(c).mean()))
    cell = CellComparison(cell_id, label, "unchanged", geo_b, geo_c, geo_c / geo_b, samples=kind)
    if len(b) >= MIN_SAMPLES_FOR_TEST and len(c) >= MIN_SAMPLES_FOR_TEST:
        _, cell.ci, cell.p_value = log_ratio_test(b, c)  # its ratio is the same geometric-mean ratio
    else:
        cell.note = "too few samples for a test: threshold only"
    return cell


def decide(cells: list[CellComparison], threshold: float, alpha: float) -> None:
    """Holm-adjust the tested cells' p-values together, then give each compared cell its verdict."""
    tested = [c for c in cells if c.p_value is not None]
    for cell, adjusted in zip(tested, holm([c.p_value for c in tested]), strict=True):
        cell.p_adjusted = adjusted
    for cell in cells:
        if cell.verdict != "unchanged" or cell.ratio is None:
            continue
        significant = cell.p_adjusted is None or cell.p_adjusted < alpha
        if cell.ratio < 1 - threshold and significant:
            cell.verdict = "regression"
        elif cell.ratio > 1 + threshold and significant:
            cell.verdict = "improvement"


def compare(baseline: list[Path], candidate: list[Path], threshold: float = 0.05, alpha: float = 0.05) -> Comparison:
    base, cand = ResultStore(baseline).latest(), ResultStore(candidate).latest()
    cells = [compare_cell(base.get(cell_id, []), cand.get(cell_id, []))
             for cell_id in sorted(set(base) | set(cand))]
    decide(cells, threshold, alpha)
    machines = lambda cells: {r.environment.get("fingerprint") for rs in cells.values() for r in rs}  # noqa: E731
    return Comparison(cells, machines(base), machines(cand))
