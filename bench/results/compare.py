"""Baseline vs candidate: match cells by id, judge each on throughput and on a quieter signal, with
statistical tests, a floor and an equivalence threshold. Pure (JSON records in, a verdict per cell out):
no torch, no Ray.

Signals (`SIGNALS`), each a per-repeat sample turned into a rate where higher is better, so a ratio below
1 is a slowdown on every one: `throughput`, the steady img/s of each repeat (driver clock,
bench.measure.metrics) — what the user gets, dispatch, queueing and transfer included; `cpu`, images per
CPU-second of the workers (1 / cpu_s_per_image); `service`, batches per second of worker service
(1 / the median service_s). The last two leave dispatch and queueing out and are quieter, so a compute
slowdown hidden in throughput's noise can show there. A signal is used for a cell only when every ok
repeat on both sides has it (finite, above 0); older records lack cpu_s_per_image.

Statistics are on logs, so a change is a ratio: the geometric mean of the candidate's repeats over the
baseline's, with a Welch t 95% interval; for an A/B job's records (`paired`), whose repeat i ran on both
sides within seconds of each other, a paired t on the rounds' log ratios (the host's drift between
rounds, shared by both runs of a round, then leaves the test; on the records of an earlier 5-round
planted night it gave 0.51–1.29× Welch's standard error over its 27 cells × signals, median 0.90×).
Each tested cell is judged on throughput and on its most precise other gated signal (`GATED_SIGNALS`;
the smallest pooled log variance over both sides, or with pairs that of the rounds' log ratios; ties
to the first listed). The one-sided p-values ("no slowdown") of every test performed — all cells × the
signals each is judged on — are Holm-adjusted together, so the chance that an unchanged tree fails
the gate stays below `alpha` however many cells and signals there are. Mann–Whitney U was used before:
with 5 repeats a side its smallest p is 0.008, so no cell of a 9-cell sweep could ever pass a family-wise
correction, while uncorrected it flagged one noise cell in a few nightly runs.

Verdicts, three-way (Chromium Pinpoint's DIFFERENT / SAME / UNKNOWN):
- regression: on some judged signal the adjusted p is below `alpha` and the ratio below 1 − `floor`
  (Perfherder's 2%: smaller effects are never reported); `flagged_by` names the signal(s), and `blame`
  says where it is: "compute" when the cell's compute signal (cpu or service) fell, "outside compute"
  (dispatch, queueing, transfer) when the workers were busy less of the time (`BUSY`, throughput ×
  CPU-seconds per image: a compute slowdown moves both factors and leaves it, time the workers wait for
  work lowers it), "compute and outside compute" when both, else "unclear" (each tested one-sided at
  BLAME_LEVEL, past the floor);
- improvement: the mirror, on throughput;
- unchanged: an equivalence test (TOST) on throughput shows the ratio within ±`threshold` (in logs:
  both one-sided Welch tests at `alpha` put the log ratio inside ±log(1 + threshold));
- unknown: neither — more rounds are needed. It never passes the gate (bench.results.gate).
Too few samples for a test: a ratio past the threshold alone is a regression (or an improvement), and
anything else is unknown; the table says so. Invalid cells (too short a steady state) on either side are
reported as such and never gate.

Each tested cell also gets its minimum detectable slowdown, per signal: the smallest true slowdown that
would be flagged about 4 times in 5. A signal flags a cell when its ratio is below 1 − floor *and* its
Holm p is below alpha, so both bounds enter: δ = max(t(1 − α/m) · SE, −ln(1 − floor)) + t(0.8) · SE on
the log signal, SE from Welch, m the tests performed (Holm's first step: a slowdown in one test alone).
The spread is estimated from the same few repeats, so the figure is an estimate too; the gate prints it.

Across machines (`normalise=True`) each side is put on its machine's scale: the median of every probe
on that side (bench.workload.speed_probe: seconds of a fixed b0 forward, one per record, all cells
pooled). Machine speed is one figure per side; a single probe is noisy (CV ~15% within one sweep here,
as noisy as a cell's throughput), so dividing each repeat by its own probe added noise to as many cells
as it removed it from, and the pooled median is used instead. The normalised ratio is the raw ratio
times P_candidate / P_baseline; the uncertainty of each median (1.2533 · sd(log probe) / √n) is added
to the Welch variance of the test, its interval and its detectable slowdown. What a probe cannot
remove is listed by `probe_caveats`. The probe scales throughput only: cpu and service rates are
machine-dependent too and are not normalised, so across machines a cell is judged on throughput alone.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.results import quality
from bench.results.baselines import gpu_names
from bench.results.measured import POSITIVE, Metrics
from bench.results.record import RunRecord
from bench.results.store import ResultStore
from bench.stats import equivalence_reach, holm, one_sided_p, tost
from bench.workload import speed_probe

FLOOR = 0.02  # Perfherder's floor: a slowdown (or speed-up) smaller than this is never reported


def _rate(value: object) -> float | None:
    """A positive finite number, else None (the signal is absent)."""
    return float(value) if POSITIVE(value) else None


def _inverse(value: object) -> float | None:
    rate = _rate(value)
    return _rate(1 / rate) if rate is not None else None


@dataclass(frozen=True)
class Signal:
    """One per-repeat sample the gate can test, as a rate where higher is better (a ratio below 1 is a
    slowdown); `extract` gives None where a record lacks it."""

    name: str
    description: str
    extract: Callable[[Metrics], float | None]


SIGNALS: tuple[Signal, ...] = (
    Signal("throughput", "steady images per second (driver clock: dispatch, queueing and transfer included)",
           lambda m: _rate(m.throughput_steady)),
    Signal("cpu", "images per CPU-second of the workers (1 / cpu_s_per_image)",
           lambda m: _inverse(m.cpu_s_per_image)),
    Signal("service", "batches per second of worker service (1 / the median service_s per batch)",
           lambda m: _inverse(m.service_s.get("p50")) if isinstance(m.service_s, dict) else None),
)
SIGNAL_NAMES = tuple(s.name for s in SIGNALS)
# The signals admitted to the gate. A signal joins only after tests/measure/test_signals.py shows that it
# tracks throughput under a planted compute slowdown and stays put under a dispatch-only one.
GATED_SIGNALS = ("throughput", "cpu", "service")
PRIMARY = "throughput"  # every tested cell is judged on it; improvements and "unchanged" on it alone
# Not gated: where a regression flagged by throughput alone is. The noise a run shares between its driver's
# clock and its workers' CPU time cancels in it: on a dispatch-only night here (records of 2026-12-05)
# throughput's pairs read 0.80–0.93 and this signal's 0.894–0.910.
BLAME_LEVEL = 0.05  # a one-sided test that describes a cell already flagged: the same at every look, no Holm
BUSY = Signal("busy", "CPU-seconds of the workers per second of the driver's clock (throughput × cpu_s_per_image)",
              lambda m: _rate(m.throughput_steady * m.cpu_s_per_image) if POSITIVE(m.throughput_steady)
              and POSITIVE(m.cpu_s_per_image) else None)


@dataclass
class SignalTest:
    """One signal of one cell: the log ratio candidate/baseline of the geometric means, its Welch standard
    error and degrees of freedom, and the tests on it."""

    log_ratio: float
    se: float
    df: float
    variance: float  # pooled variance of the log samples over both sides (the most precise is judged)
    ci: tuple[float, float]  # 95% interval of the ratio
    p_slower: float  # one-sided Welch p, H0: no slowdown
    p_faster: float  # one-sided Welch p, H0: no speed-up
    p_slower_adjusted: float | None = None  # Holm over every test performed (cells × judged signals)
    p_faster_adjusted: float | None = None

    @property
    def ratio(self) -> float:
        return float(np.exp(self.log_ratio))


@dataclass
class CellComparison:
    cell_id: str
    label: str
    verdict: str  # regression | improvement | unchanged | unknown | missing | new | failed | invalid
    baseline: float | None = None  # geometric mean of the repeats' steady img/s
    candidate: float | None = None
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None  # one-sided Welch p on log throughput, in the direction of its change
    p_adjusted: float | None = None  # Holm-adjusted over every test of the comparison (cells × signals)
    samples: str = ""
    note: str = ""
    detectable: float | None = None  # minimum detectable slowdown (80% power) on throughput, a fraction
    probe_ratio: float | None = None  # across machines: candidate machine's probe speed over the baseline's
    signals: dict[str, SignalTest] = field(default_factory=dict)  # every signal it had samples for
    judged_on: list[str] = field(default_factory=list)  # throughput and its most precise other gated signal
    flagged_by: list[str] = field(default_factory=list)  # the judged signals that flagged a regression
    blame: str | None = None  # compute | outside compute | compute and outside compute | unclear (_blame)
    busy: SignalTest | None = None  # the BUSY signal's test, where both sides have it (for the blame)
    detectable_by_signal: dict[str, float] = field(default_factory=dict)
    tost_p: float | None = None  # equivalence test on throughput: below alpha means within ±threshold
    reach: float | None = None  # how far from 1 the throughput ratio may be (1 − alpha each side), a fraction


@dataclass
class Comparison:
    cells: list[CellComparison]
    baseline_machines: set[str] = field(default_factory=set)
    candidate_machines: set[str] = field(default_factory=set)
    caveats: str = ""
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # files not read as records, with why
    left_out: list[str] = field(default_factory=list)  # baseline cells outside the `only` a caller named

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


def signal_samples(records: list[RunRecord], signal: Signal) -> np.ndarray | None:
    """Each ok repeat's value of `signal`; None when a repeat lacks it."""
    values = [signal.extract(r.metrics) for r in _ok(records)]
    return None if any(v is None for v in values) else np.array(values, dtype=float)


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


def minimum_detectable(base: np.ndarray, cand: np.ndarray, alpha: float, floor: float = 0.0,
                       power: float = POWER, extra_variance: float = 0.0) -> float | None:
    """The smallest slowdown (a fraction) flagged with probability `power` by a gate that needs both a
    one-sided Welch test at `alpha` and a ratio below 1 − `floor`, given these samples' spread (plus
    `extra_variance` on the log ratio: the machine scales' across machines); None with fewer than 2
    samples a side."""
    if len(base) < 2 or len(cand) < 2:
        return None
    return _detectable(*_welch(np.log(base), np.log(cand), extra_variance), alpha, floor, power)


def _detectable(se: float, df: float, alpha: float, floor: float, power: float = POWER) -> float:
    """`minimum_detectable` from a log ratio's Welch standard error and degrees of freedom."""
    from scipy import stats

    least = -np.log(1 - floor)
    if se == 0:
        return float(1 - np.exp(-least))
    delta = max(stats.t.ppf(1 - alpha, df) * se, least) + stats.t.ppf(power, df) * se
    return float(1 - np.exp(-delta))


def _welch(lb: np.ndarray, lc: np.ndarray, extra_variance: float = 0.0) -> tuple[float, float]:
    """Standard error of the difference of means and Welch–Satterthwaite degrees of freedom."""
    vb, vc = np.var(lb, ddof=1) / len(lb), np.var(lc, ddof=1) / len(lc)
    se = float(np.sqrt(vb + vc + extra_variance))
    if vb + vc == 0:
        return se, float(len(lb) + len(lc) - 2)
    return se, float((vb + vc) ** 2 / (vb**2 / (len(lb) - 1) + vc**2 / (len(lc) - 1)))


def signal_test(base: np.ndarray, cand: np.ndarray, shift: float = 0.0,
                extra_variance: float = 0.0, paired: bool = False) -> SignalTest:
    """Welch on the logs of two samples of a rate: the log ratio of the geometric means moved by `shift`
    (a known scale between the sides) whose estimate has `extra_variance`, its 95% interval, both one-sided
    p-values, and the pooled log variance that ranks signals by precision. `paired`: base[i] and cand[i]
    were measured side by side (an A/B job's round i), so the test is on their log ratios: a drift of the
    host that both runs of a pair shared leaves it, which Welch counts as noise."""
    from scipy import stats

    lb, lc = np.log(base), np.log(cand)
    diff = float(lc.mean() - lb.mean() + shift)
    if paired:
        d = lc - lb
        pooled = float(np.var(d, ddof=1))
        se, df = float(np.sqrt(pooled / len(d) + extra_variance)), float(len(d) - 1)
    else:
        se, df = _welch(lb, lc, extra_variance)
        pooled = float(((len(lb) - 1) * np.var(lb, ddof=1) + (len(lc) - 1) * np.var(lc, ddof=1))
                       / (len(lb) + len(lc) - 2))
    half = float(stats.t.ppf(0.975, df)) * se if se else 0.0
    return SignalTest(diff, se, df, pooled, (float(np.exp(diff - half)), float(np.exp(diff + half))),
                      *one_sided_p(diff, se, df))


def _invalid(records: list[RunRecord]) -> str | None:
    reasons = {"; ".join((r.metrics and r.metrics.invalid_reasons) or ["recorded before validity was checked"])
               for r in records if r.ok and not (r.metrics and r.metrics.valid)}
    return " | ".join(sorted(reasons)) or None


MIN_SAMPLES_FOR_TEST = 3


def _quality_lost(base: list[RunRecord], cand: list[RunRecord]) -> str | None:
    """Why the candidate's maps fell below their quality floor where the baseline's were at or above it
    (bench.results.quality), or None; a cell below its floor on both sides is no change of this commit's."""
    below = [why for r in cand if r.ok and (why := quality.below_floor(r))]
    if below and not any(quality.below_floor(r) for r in base if r.ok):
        return below[0]
    return None


def _pairs(base: list[RunRecord], cand: list[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]] | None:
    """The ok repeats both sides have, matched by repeat index (an A/B job's round), or None when fewer
    than MIN_SAMPLES_FOR_TEST pairs."""
    b = {r.repeat_index: r for r in _ok(base)}
    c = {r.repeat_index: r for r in _ok(cand)}
    common = sorted(set(b) & set(c))
    if len(common) < MIN_SAMPLES_FOR_TEST:
        return None
    return [b[i] for i in common], [c[i] for i in common]


def compare_cell(base: list[RunRecord], cand: list[RunRecord],
                 scales: tuple[MachineScale, MachineScale] | None = None, paired: bool = False) -> CellComparison:
    """A cell's comparison; the verdict of a tested cell waits for the Holm adjustment (`decide`).
    `scales`: across machines, (baseline's, candidate's) machine scale. `paired`: the sides ran in
    alternating rounds, repeat i of each side side by side; with enough pairs the tests are on the pairs'
    log ratios (repeats without a partner are left out), else Welch on every repeat."""
    label = _label((cand or base)[0])
    cell_id = (cand or base)[0].cell_id
    if not base:
        return CellComparison(cell_id, label, "new", note="not in the baseline")
    if not cand:
        return CellComparison(cell_id, label, "missing", note="not in the candidate")
    if not any(r.ok for r in cand):
        return CellComparison(cell_id, label, "failed", note=cand[-1].error or cand[-1].status)
    if worse := _quality_lost(base, cand):  # a runtime that became fast and wrong fails, whatever its speed
        return CellComparison(cell_id, label, "failed", note=f"quality: {worse}")
    b, c = samples(base), samples(cand)
    kind = f"{len(b)}/{len(c)} repeats"
    for side, records in (("baseline", base), ("candidate", cand)):
        if reason := _invalid(records):
            return CellComparison(cell_id, label, "invalid", samples=kind, note=f"{side} invalid: {reason}")
    pairs = _pairs(base, cand) if paired and not scales else None
    if pairs:
        base, cand = pairs
        b, c = samples(base), samples(cand)
        kind = f"{len(b)} pairs"
    if len(c) == 0:
        return CellComparison(cell_id, label, "failed", samples=kind, note="no samples")
    if len(b) == 0:  # in the baseline, but nothing to gate against: never counted as gated
        return CellComparison(cell_id, label, "invalid", samples=kind, note="baseline has no successful repeat")
    base_scale, cand_scale = scales or (MachineScale(), MachineScale())
    # Normalised figures are images per probe-forward: img/s × the side's median probe seconds.
    geo_b = float(np.exp(np.log(b).mean() + base_scale.log_seconds))
    geo_c = float(np.exp(np.log(c).mean() + cand_scale.log_seconds))
    cell = CellComparison(cell_id, label, "unknown", geo_b, geo_c, geo_c / geo_b, samples=kind)
    if scales:  # a probe in seconds: the machine's speed is its inverse
        cell.probe_ratio = float(np.exp(base_scale.log_seconds - cand_scale.log_seconds))
    if len(b) < MIN_SAMPLES_FOR_TEST or len(c) < MIN_SAMPLES_FOR_TEST:
        cell.note = f"too few samples for a test (needs {MIN_SAMPLES_FOR_TEST} repeats a side): threshold only"
        return cell
    # The probe scales throughput only: across machines the other signals are not comparable.
    for signal in SIGNALS if not scales else [s for s in SIGNALS if s.name == PRIMARY]:
        if signal.name == PRIMARY:
            cell.signals[PRIMARY] = signal_test(b, c, cand_scale.log_seconds - base_scale.log_seconds,
                                                base_scale.variance + cand_scale.variance, bool(pairs))
        elif (sb := signal_samples(base, signal)) is not None and (sc := signal_samples(cand, signal)) is not None:
            cell.signals[signal.name] = signal_test(sb, sc, paired=bool(pairs))
    # On a GPU the workers' CPU time leaves the kernels out, so their busy share would not split compute off.
    on_cpu = all(r.spec.get("device", "cpu") == "cpu" for r in [*base, *cand])
    if on_cpu and not scales and (sb := signal_samples(base, BUSY)) is not None and (
            sc := signal_samples(cand, BUSY)) is not None:
        cell.busy = signal_test(sb, sc, paired=bool(pairs))
    cell.ci = cell.signals[PRIMARY].ci
    others = [name for name in GATED_SIGNALS if name != PRIMARY and name in cell.signals]
    best = min(others, key=lambda name: cell.signals[name].variance, default=None)  # ties: the first listed
    cell.judged_on = [PRIMARY, *([best] if best else [])]
    return cell


def decide(cells: list[CellComparison], threshold: float, alpha: float, floor: float = FLOOR) -> None:
    """Holm-adjust the one-sided p-values of every test (each tested cell × the signals it is judged on)
    together, then give each compared cell its verdict and what it could have seen on each signal."""
    tests = [(cell, cell.signals[name]) for cell in cells if cell.ratio is not None for name in cell.judged_on]
    for (_, test), slower, faster in zip(tests, holm([t.p_slower for _, t in tests]),
                                         holm([t.p_faster for _, t in tests]), strict=True):
        test.p_slower_adjusted, test.p_faster_adjusted = slower, faster
    for cell in cells:
        if cell.ratio is None or cell.verdict not in ("regression", "improvement", "unchanged", "unknown"):
            continue
        cell.detectable_by_signal = {name: _detectable(t.se, t.df, alpha / max(len(tests), 1), floor)
                                     for name, t in cell.signals.items()}
        cell.detectable = cell.detectable_by_signal.get(PRIMARY)
        cell.verdict, cell.flagged_by = _verdict(cell, threshold, alpha, floor)


def _verdict(cell: CellComparison, threshold: float, alpha: float, floor: float) -> tuple[str, list[str]]:
    if PRIMARY not in cell.signals:  # too few samples for a test: the threshold alone
        if cell.ratio < 1 - threshold:
            return "regression", [PRIMARY]
        if cell.ratio > 1 + threshold:
            return "improvement", []
        cell.note = f"needs more rounds: too few samples for a test (needs {MIN_SAMPLES_FOR_TEST} repeats a side)"
        return "unknown", []
    primary = cell.signals[PRIMARY]
    slower = primary.log_ratio < 0
    cell.p_value = primary.p_slower if slower else primary.p_faster
    cell.p_adjusted = primary.p_slower_adjusted if slower else primary.p_faster_adjusted
    cell.tost_p = tost(primary.log_ratio, primary.se, primary.df, float(np.log1p(threshold)))
    cell.reach = float(np.expm1(equivalence_reach(primary.log_ratio, primary.se, primary.df, alpha)))
    flagged = [name for name in cell.judged_on
               if cell.signals[name].p_slower_adjusted < alpha and cell.signals[name].ratio < 1 - floor]
    if flagged:
        cell.blame = _blame(cell, floor)
        return "regression", flagged
    if primary.p_faster_adjusted < alpha and primary.ratio > 1 + floor:
        return "improvement", []
    if cell.tost_p < alpha:
        return "unchanged", []
    cell.note = f"needs more rounds: ±{cell.reach:.1%} at {1 - alpha:.0%} vs threshold {threshold:.0%}"
    return "unknown", []


def suspect(cell: CellComparison, floor: float) -> bool:
    """An unknown cell whose ratio on a signal it is judged on is below 1 − floor: a slowdown the gate
    would report, were it significant."""
    return cell.verdict == "unknown" and any(cell.signals[name].ratio < 1 - floor for name in cell.judged_on)


def _blame(cell: CellComparison, floor: float) -> str:
    """Where a regression is, each factor of throughput tested alike (its ratio below 1 − floor, its
    one-sided p below BLAME_LEVEL): "compute" when the workers' compute fell (the cell's judged compute
    signal, or cpu: throughput is exactly the cpu rate × BUSY), "outside compute" (dispatch, queueing,
    transfer) when the workers were busy less of the time (BUSY), "compute and outside compute" when both,
    else "unclear". Without BUSY (no CPU time in the records, or a GPU cell): outside compute when the
    compute signal moved less than the floor."""
    def fell(test: SignalTest) -> bool:
        return test.ratio < 1 - floor and test.p_slower < BLAME_LEVEL

    compute = [cell.signals[name] for name in cell.judged_on if name != PRIMARY]
    if cell.busy is not None and "cpu" in cell.signals:
        compute.append(cell.signals["cpu"])
    in_compute = any(fell(test) for test in compute)
    outside = fell(cell.busy) if cell.busy is not None else bool(compute) and compute[0].ratio >= 1 - floor
    return {(True, True): "compute and outside compute", (True, False): "compute",
            (False, True): "outside compute", (False, False): "unclear"}[in_compute, outside]


def compare(baseline: list[Path], candidate: list[Path], threshold: float = 0.05, alpha: float = 0.05,
            normalise: bool = False, floor: float = FLOOR, paired: bool = False,
            only: AbstractSet[str] | None = None) -> Comparison:
    """Match cells by id and judge each: `threshold` bounds "unchanged" (the equivalence test), `floor` is
    the smallest change ever reported, `alpha` the family-wise level over cells × signals. `normalise`:
    across machines, each side on its machine's scale, judged on throughput alone (raises
    NotNormalisable where a record has no probe). `paired`: the sides are an A/B job's, repeat i of each
    measured side by side (compare_cell). `only`: the cell ids the candidate's sweep runs; a baseline cell
    outside them is left out (`Comparison.left_out`), not reported missing."""
    stores = ResultStore(baseline), ResultStore(candidate)
    base, cand = (store.latest() for store in stores)
    left_out = sorted(set(base) - only) if only is not None else []
    base = {cell_id: records for cell_id, records in base.items() if only is None or cell_id in only}
    scales = None
    if normalise:
        scales = tuple(machine_scale([r for rs in side.values() for r in rs]) for side in (base, cand))
    ids = sorted(set(base) | set(cand))
    cells = [compare_cell(base.get(cell_id, []), cand.get(cell_id, []), scales, paired) for cell_id in ids]
    decide(cells, threshold, alpha, floor)
    machines = lambda cells: {r.environment.get("fingerprint") for rs in cells.values() for r in rs}  # noqa: E731
    environments = lambda cells: [r.environment for rs in cells.values() for r in rs]  # noqa: E731
    caveats = ""
    if scales:
        caveats = (f"machine scales: median b0-forward probe {np.exp(scales[0].log_seconds) * 1000:.0f} ms "
                   f"({scales[0].probes} probes) vs {np.exp(scales[1].log_seconds) * 1000:.0f} ms "
                   f"({scales[1].probes}); " + probe_caveats(environments(base), environments(cand))
                   + "; judged on throughput only: the probe does not scale the cpu and service signals, which "
                   "depend on the machine too")
    return Comparison(cells, machines(base), machines(cand), caveats, [*stores[0].skipped(), *stores[1].skipped()],
                      left_out)


def detectable_summary(result: Comparison) -> str | None:
    """One line: what the gate could have seen over the tested cells — on throughput, on each other signal,
    and on the best signal each cell was judged on."""
    found = [(c.detectable, c.label) for c in result.cells if c.detectable is not None]
    if not found:
        return None
    worst, label = max(found)
    median = float(np.median([d for d, _ in found]))
    compared = sum(c.ratio is not None for c in result.cells)
    line = (f"minimum detectable slowdown over the {len(found)} tested of {compared} compared cells (flagged about "
            f"4 times in 5; estimated from their repeats): {PRIMARY} median {median:.0%}, worst {worst:.0%} ({label})")
    for name in SIGNAL_NAMES:
        values = [c.detectable_by_signal[name] for c in result.cells if name in c.detectable_by_signal]
        if name != PRIMARY and values:
            line += f"; {name} median {float(np.median(values)):.0%} ({_cells(len(values))})"
    best = [min((c.detectable_by_signal[name], name) for name in c.judged_on if name in c.detectable_by_signal)
            for c in result.cells if c.detectable is not None]
    if any(name != PRIMARY for _, name in best):
        counts = {name: sum(n == name for _, n in best) for name in SIGNAL_NAMES}
        line += (f"; best judged signal median {float(np.median([d for d, _ in best])):.0%} ("
                 + ", ".join(f"{name} on {_cells(k)}" for name, k in counts.items() if k) + ")")
    return line


def _cells(n: int) -> str:
    return f"{n} cell" + ("" if n == 1 else "s")


def judged_summary(result: Comparison) -> str | None:
    """One line: which signals the tested cells were judged on, and what each means."""
    judged = [c.judged_on for c in result.cells if c.judged_on]
    if not judged:
        return None
    others = {name: sum(name in on for on in judged) for name in SIGNAL_NAMES if name != PRIMARY}
    alone = sum(len(on) == 1 for on in judged)
    parts = [f"{name} on {k}" for name, k in others.items() if k] + ([f"{PRIMARY} alone on {alone}"] if alone else [])
    used = [s for s in SIGNALS if s.name == PRIMARY or others.get(s.name)]
    return (f"judged on {PRIMARY} and each cell's most precise other signal ({', '.join(parts)} of {len(judged)} "
            "tested cells); " + "; ".join(f"{s.name}: {s.description}" for s in used))


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
