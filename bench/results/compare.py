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

Each tested cell also gets its minimum detectable slowdown: the smallest true slowdown its samples
would flag with 80% power at the cell's first Holm step (alpha / tested cells), from Welch's standard
error: δ = (t(1 − α/2m) + t(0.8)) · SE on log throughput. "Unchanged" then means "no slowdown larger
than max(threshold, detectable) could have been missed", and the gate prints it.

Across machines (`normalise=True`) each repeat's throughput is first multiplied by its own record's
machine-speed probe (bench.measure.speed_probe: seconds of a fixed b0 forward), so the samples are in
images per probe-forward; the rest is the same test. What a probe cannot remove is listed by
`speed_probe.caveats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.measure import speed_probe
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
    detectable: float | None = None  # minimum detectable slowdown (80% power), a fraction
    probe_ratio: float | None = None  # across machines: candidate machine's probe speed over the baseline's


@dataclass
class Comparison:
    cells: list[CellComparison]
    baseline_machines: set[str] = field(default_factory=set)
    candidate_machines: set[str] = field(default_factory=set)
    normalised: bool = False
    caveats: str = ""

    @property
    def machine_mismatch(self) -> bool:
        return self.baseline_machines != self.candidate_machines

    @property
    def regressions(self) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict in ("regression", "failed")]


def _label(record: RunRecord) -> str:
    s = record.spec
    return f"{s['strategy']} {s['model']} {s['device']} bs{s['batch_size']} a{s['actors']}"


class NotNormalisable(ValueError):
    """Records without a machine-speed probe cannot be put on another machine's scale."""


def _ok(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.ok and r.metrics.get("throughput_steady")]


def probe_seconds(record: RunRecord) -> float:
    probe = record.machine_probe or {}
    if not probe.get("b0_forward_s"):
        raise NotNormalisable(f"{record.cell_id} (repeat {record.repeat_index}) has no machine-speed probe: it was "
                              "recorded before probes or with SEGBENCH_SPEED_PROBE=0, so it cannot be compared "
                              "across machines")
    return probe["b0_forward_s"]


def samples(records: list[RunRecord], normalise: bool = False) -> np.ndarray:
    """Each ok repeat's steady throughput; normalised: times its own probe's b0 forward seconds."""
    return np.array([r.metrics["throughput_steady"] * (probe_seconds(r) if normalise else 1.0) for r in _ok(records)])


POWER = 0.8


def minimum_detectable(base: np.ndarray, cand: np.ndarray, alpha: float, power: float = POWER) -> float | None:
    """The smallest slowdown (a fraction) a two-sided Welch test at `alpha` finds with `power`, given
    these samples' spread; None with fewer than 2 samples a side."""
    from scipy import stats

    if len(base) < 2 or len(cand) < 2:
        return None
    vb, vc = np.var(np.log(base), ddof=1) / len(base), np.var(np.log(cand), ddof=1) / len(cand)
    se = float(np.sqrt(vb + vc))
    if se == 0:
        return 0.0
    df = (vb + vc) ** 2 / (vb**2 / (len(base) - 1) + vc**2 / (len(cand) - 1))
    delta = (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se
    return float(1 - np.exp(-delta))


def _invalid(records: list[RunRecord]) -> str | None:
    reasons = {"; ".join(r.metrics.get("invalid_reasons") or ["recorded before validity was checked"])
               for r in records if r.ok and not r.metrics.get("valid")}
    return " | ".join(sorted(reasons)) or None


MIN_SAMPLES_FOR_TEST = 3


def compare_cell(base: list[RunRecord], cand: list[RunRecord], normalise: bool = False) -> CellComparison:
    """A cell's comparison; the verdict of a tested cell waits for the Holm adjustment (`decide`)."""
    label = _label((cand or base)[0])
    cell_id = (cand or base)[0].cell_id
    if not base:
        return CellComparison(cell_id, label, "new", note="not in the baseline")
    if not cand:
        return CellComparison(cell_id, label, "missing", note="not in the candidate")
    if not any(r.ok for r in cand):
        return CellComparison(cell_id, label, "failed", note=cand[-1].error or cand[-1].status)
    b, c = samples(base, normalise), samples(cand, normalise)
    kind = f"{len(b)}/{len(c)} repeats"
    for side, records in (("baseline", base), ("candidate", cand)):
        if reason := _invalid(records):
            return CellComparison(cell_id, label, "invalid", samples=kind, note=f"{side} invalid: {reason}")
    if len(b) == 0 or len(c) == 0:
        return CellComparison(cell_id, label, "failed" if len(c) == 0 else "new", samples=kind, note="no samples")
    geo_b, geo_c = float(np.exp(np.log(b).mean())), float(np.exp(np.log(c).mean()))
    cell = CellComparison(cell_id, label, "unchanged", geo_b, geo_c, geo_c / geo_b, samples=kind)
    if normalise:  # a probe in seconds: the machine's speed is its inverse
        speed = lambda records: np.exp(-np.log([probe_seconds(r) for r in _ok(records)]).mean())  # noqa: E731
        cell.probe_ratio = float(speed(cand) / speed(base))
    if len(b) >= MIN_SAMPLES_FOR_TEST and len(c) >= MIN_SAMPLES_FOR_TEST:
        _, cell.ci, cell.p_value = log_ratio_test(b, c)  # its ratio is the same geometric-mean ratio
    else:
        cell.note = "too few samples for a test: threshold only"
    return cell


def decide(cells: list[CellComparison], threshold: float, alpha: float,
           detectable: dict[str, float | None] | None = None) -> None:
    """Holm-adjust the tested cells' p-values together, then give each compared cell its verdict
    (and, from `detectable`'s per-cell values, what it could have seen)."""
    tested = [c for c in cells if c.p_value is not None]
    for cell, adjusted in zip(tested, holm([c.p_value for c in tested]), strict=True):
        cell.p_adjusted = adjusted
        cell.detectable = (detectable or {}).get(cell.cell_id)
    for cell in cells:
        if cell.verdict != "unchanged" or cell.ratio is None:
            continue
        significant = cell.p_adjusted is None or cell.p_adjusted < alpha
        if cell.ratio < 1 - threshold and significant:
            cell.verdict = "regression"
        elif cell.ratio > 1 + threshold and significant:
            cell.verdict = "improvement"


def compare(baseline: list[Path], candidate: list[Path], threshold: float = 0.05, alpha: float = 0.05,
            normalise: bool = False) -> Comparison:
    """Match cells by id and judge each. `normalise`: across machines, by each record's probe (raises
    NotNormalisable where a record has none)."""
    base, cand = ResultStore(baseline).latest(), ResultStore(candidate).latest()
    ids = sorted(set(base) | set(cand))
    cells = [compare_cell(base.get(cell_id, []), cand.get(cell_id, []), normalise) for cell_id in ids]
    tested = [c for c in cells if c.p_value is not None]
    detectable = {c.cell_id: minimum_detectable(samples(base[c.cell_id], normalise),
                                                samples(cand[c.cell_id], normalise), alpha / max(len(tested), 1))
                  for c in tested}
    decide(cells, threshold, alpha, detectable)
    machines = lambda cells: {r.environment.get("fingerprint") for rs in cells.values() for r in rs}  # noqa: E731
    environments = lambda cells: [r.environment for rs in cells.values() for r in rs]  # noqa: E731
    caveats = speed_probe.caveats(environments(base), environments(cand)) if normalise else ""
    return Comparison(cells, machines(base), machines(cand), normalise, caveats)


def detectable_summary(result: Comparison, threshold: float) -> str | None:
    """One line: what an unchanged verdict rules out, over the tested cells."""
    found = [(max(c.detectable, threshold), c.label) for c in result.cells if c.detectable is not None]
    if not found:
        return None
    worst, label = max(found)
    median = float(np.median([d for d, _ in found]))
    return (f"minimum detectable slowdown per cell (80% power, Holm's first step; never below the {threshold:.0%} "
            f"threshold): median {median:.0%}, worst {worst:.0%} ({label}); a slowdown that large is flagged at "
            "least 4 times in 5")
