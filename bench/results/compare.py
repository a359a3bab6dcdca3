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

Each tested cell also gets its minimum detectable slowdown: the smallest true slowdown that would be
flagged about 4 times in 5. A cell is flagged when its ratio is below 1 − threshold *and* its Holm
p is below alpha, so both bounds enter: δ = max(t(1 − α/2m) · SE, −ln(1 − threshold)) + t(0.8) · SE on
log throughput, SE from Welch, m the tested cells (Holm's first step: a slowdown in one cell alone). The
spread is estimated from the same few repeats, so the figure is an estimate too. "Unchanged" then means
"no slowdown larger than this would likely have passed", and the gate prints it.

Across machines (`normalise=True`) each side is put on its machine's scale: the median of every probe
on that side (bench.workload.speed_probe: seconds of a fixed b0 forward, one per record, all cells
pooled). Machine speed is one figure per side; a single probe is noisy (CV ~15% within one sweep here,
as noisy as a cell's throughput), so dividing each repeat by its own probe added noise to as many cells
as it removed it from, and the pooled median is used instead. The normalised ratio is the raw ratio
times P_candidate / P_baseline; the uncertainty of each median (1.2533 · sd(log probe) / √n) is added
to the Welch variance of the test, its interval and its detectable slowdown. What a probe cannot
remove is listed by `probe_caveats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.results.baselines import gpu_names
from bench.results.record import RunRecord
from bench.results.store import ResultStore
from bench.stats import holm, log_ratio_test
from bench.workload import speed_probe


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
    caveats: str = ""
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # files not read as records, with why

    @property
    def machine_mismatch(self) -> bool:
        return self.baseline_machines != self.candidate_machines

    @property
    def regressions(self) -> list[CellComparison]:
        return [c for c in self.cells if c.verdict in ("regression", "failed")]


def _label(record: RunRecord) -> str:
    s = record.spec  # a record names its strategy; the rest may be absent from an old or foreign one
    return f"{s['strategy']} {s.get('model')} {s.get('device')} bs{s.get('batch_size')} a{s.get('actors')}"


class NotNormalisable(ValueError):
    """Records without a machine-speed probe cannot be put on another machine's scale."""


def _ok(records: list[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.ok and r.metrics and r.metrics.throughput_steady]


def probe_seconds(record: RunRecord) -> float:
    probe = record.machine_probe or {}
    if not probe.get("b0_forward_s"):
        why = f"its probe failed ({probe['error']})" if probe.get("error") else (
            "it was recorded before probes or with SEGBENCH_SPEED_PROBE=0")
        raise NotNormalisable(f"{record.cell_id} (repeat {record.repeat_index}) has no machine-speed probe: {why}, "
                              "so it cannot be compared across machines")
    if probe.get("version") not in (None, speed_probe.VERSION):
        raise NotNormalisable(f"{record.cell_id} has a version {probe['version']} probe; this segbench's is "
                              f"version {speed_probe.VERSION}, and probes of different versions measure different work")
    return probe["b0_forward_s"]


def samples(records: list[RunRecord]) -> np.ndarray:
    """Each ok repeat's steady throughput."""
    return np.array([r.metrics.throughput_steady for r in _ok(records)])


@dataclass
class MachineScale:
    """One side's machine speed: the log of its median probe seconds and the variance of that estimate."""

    log_seconds: float = 0.0
    variance: float = 0.0
    probes: int = 0


def machine_scale(records: list[RunRecord]) -> MachineScale:
    logs = np.log([probe_seconds(r) for r in _ok(records)])
    if len(logs) == 0:
        raise NotNormalisable("no finished record to take a machine-speed probe from")
    variance = (1.2533 * np.std(logs, ddof=1)) ** 2 / len(logs) if len(logs) > 1 else 0.0
    return MachineScale(float(np.median(logs)), float(variance), len(logs))


POWER = 0.8


def minimum_detectable(base: np.ndarray, cand: np.ndarray, alpha: float, threshold: float = 0.0,
                       power: float = POWER, extra_variance: float = 0.0) -> float | None:
    """The smallest slowdown (a fraction) flagged with probability `power` by a gate that needs both a
    two-sided Welch test at `alpha` and a ratio below 1 − `threshold`, given these samples' spread (plus
    `extra_variance` on the log ratio: the machine scales' across machines); None with fewer than 2
    samples a side."""
    from scipy import stats

    if len(base) < 2 or len(cand) < 2:
        return None
    se, df = _welch(np.log(base), np.log(cand), extra_variance)
    floor = -np.log(1 - threshold)
    if se == 0:
        return float(1 - np.exp(-floor))
    delta = max(stats.t.ppf(1 - alpha / 2, df) * se, floor) + stats.t.ppf(power, df) * se
    return float(1 - np.exp(-delta))


def _welch(lb: np.ndarray, lc: np.ndarray, extra_variance: float = 0.0) -> tuple[float, float]:
    """Standard error of the difference of means and Welch–Satterthwaite degrees of freedom."""
    vb, vc = np.var(lb, ddof=1) / len(lb), np.var(lc, ddof=1) / len(lc)
    se = float(np.sqrt(vb + vc + extra_variance))
    if vb + vc == 0:
        return se, float(len(lb) + len(lc) - 2)
    return se, float((vb + vc) ** 2 / (vb**2 / (len(lb) - 1) + vc**2 / (len(lc) - 1)))


def shifted_log_ratio_test(base: np.ndarray, cand: np.ndarray, shift: float,
                           extra_variance: float) -> tuple[float, tuple[float, float], float]:
    """`log_ratio_test` with the log ratio moved by `shift` (a known scale between the sides) whose
    estimate has `extra_variance`: ratio, 95% interval, two-sided p."""
    from scipy import stats

    lb, lc = np.log(base), np.log(cand)
    diff = float(lc.mean() - lb.mean() + shift)
    se, df = _welch(lb, lc, extra_variance)
    if se == 0:
        return float(np.exp(diff)), (float(np.exp(diff)),) * 2, 1.0 if diff == 0 else 0.0
    half = stats.t.ppf(0.975, df) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return float(np.exp(diff)), (float(np.exp(diff - half)), float(np.exp(diff + half))), p


def _invalid(records: list[RunRecord]) -> str | None:
    reasons = {"; ".join((r.metrics and r.metrics.invalid_reasons) or ["recorded before validity was checked"])
               for r in records if r.ok and not (r.metrics and r.metrics.valid)}
    return " | ".join(sorted(reasons)) or None


MIN_SAMPLES_FOR_TEST = 3


def compare_cell(base: list[RunRecord], cand: list[RunRecord],
                 scales: tuple[MachineScale, MachineScale] | None = None) -> CellComparison:
    """A cell's comparison; the verdict of a tested cell waits for the Holm adjustment (`decide`).
    `scales`: across machines, (baseline's, candidate's) machine scale."""
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
    if len(c) == 0:
        return CellComparison(cell_id, label, "failed", samples=kind, note="no samples")
    if len(b) == 0:  # in the baseline, but nothing to gate against: never counted as gated
        return CellComparison(cell_id, label, "invalid", samples=kind, note="baseline has no successful repeat")
    base_scale, cand_scale = scales or (MachineScale(), MachineScale())
    # Normalised figures are images per probe-forward: img/s × the side's median probe seconds.
    geo_b = float(np.exp(np.log(b).mean() + base_scale.log_seconds))
    geo_c = float(np.exp(np.log(c).mean() + cand_scale.log_seconds))
    cell = CellComparison(cell_id, label, "unchanged", geo_b, geo_c, geo_c / geo_b, samples=kind)
    if scales:  # a probe in seconds: the machine's speed is its inverse
        cell.probe_ratio = float(np.exp(base_scale.log_seconds - cand_scale.log_seconds))
    if len(b) >= MIN_SAMPLES_FOR_TEST and len(c) >= MIN_SAMPLES_FOR_TEST:
        if scales:
            _, cell.ci, cell.p_value = shifted_log_ratio_test(b, c, cand_scale.log_seconds - base_scale.log_seconds,
                                                              base_scale.variance + cand_scale.variance)
        else:
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
    """Match cells by id and judge each. `normalise`: across machines, each side on its machine's scale
    (raises NotNormalisable where a record has no probe)."""
    stores = ResultStore(baseline), ResultStore(candidate)
    base, cand = (store.latest() for store in stores)
    scales = None
    if normalise:
        scales = tuple(machine_scale([r for rs in side.values() for r in rs]) for side in (base, cand))
    ids = sorted(set(base) | set(cand))
    cells = [compare_cell(base.get(cell_id, []), cand.get(cell_id, []), scales) for cell_id in ids]
    tested = [c for c in cells if c.p_value is not None]
    extra = sum(s.variance for s in scales) if scales else 0.0
    detectable = {c.cell_id: minimum_detectable(samples(base[c.cell_id]), samples(cand[c.cell_id]),
                                                alpha / max(len(tested), 1), threshold, extra_variance=extra)
                  for c in tested}
    decide(cells, threshold, alpha, detectable)
    machines = lambda cells: {r.environment.get("fingerprint") for rs in cells.values() for r in rs}  # noqa: E731
    environments = lambda cells: [r.environment for rs in cells.values() for r in rs]  # noqa: E731
    caveats = ""
    if scales:
        caveats = (f"machine scales: median b0-forward probe {np.exp(scales[0].log_seconds) * 1000:.0f} ms "
                   f"({scales[0].probes} probes) vs {np.exp(scales[1].log_seconds) * 1000:.0f} ms "
                   f"({scales[1].probes}); " + probe_caveats(environments(base), environments(cand)))
    return Comparison(cells, machines(base), machines(cand), caveats, [*stores[0].skipped(), *stores[1].skipped()])


def detectable_summary(result: Comparison) -> str | None:
    """One line: what an unchanged verdict rules out, over the tested cells."""
    found = [(c.detectable, c.label) for c in result.cells if c.detectable is not None]
    if not found:
        return None
    worst, label = max(found)
    median = float(np.median([d for d, _ in found]))
    compared = sum(c.ratio is not None for c in result.cells)
    return (f"minimum detectable slowdown over the {len(found)} tested of {compared} compared cells (flagged about "
            f"4 times in 5; estimated from their repeats): median {median:.0%}, worst {worst:.0%} ({label})")


def probe_caveats(base: list[dict], cand: list[dict]) -> str:
    """What dividing by the probe cannot remove, for two sets of records' environments."""
    def one(values: list) -> str:
        return "/".join(sorted({str(v) for v in values}))

    def side(environments: list[dict], key: str) -> str:
        return one([e.get(key) for e in environments])

    parts = [f"cores {side(base, 'cpu_logical')} vs {side(cand, 'cpu_logical')} (a probe with every core does not "
             "show how a strategy's workers share them)",
             "memory bandwidth and caches beyond what one b0 forward touches",
             f"GPUs {one([gpu_names(e.get('gpus')) for e in base])} vs {one([gpu_names(e.get('gpus')) for e in cand])} "
             "(the probe runs on the CPU; with a remote cluster it measures the driver's host)"]
    versions = []
    for name in ("torch", "transformers", "ray"):
        b, c = (one([(e.get("packages") or {}).get(name) for e in envs]) for envs in (base, cand))
        if b != c:
            versions.append(f"{name} {b} vs {c}")
    if versions:
        parts.append("versions differ: " + ", ".join(versions))
    return "normalisation cannot remove: " + "; ".join(parts)
