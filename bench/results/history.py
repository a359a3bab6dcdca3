"""History across many sweeps (nightly runs over days and commits), as asv shows it: each cell's steady
throughput per run, with an interval, and the step changes with the commit range where each happened.

A run is one sweep folder: its records share a commit and a date. Per cell and run, the samples are the
repeats' steady throughputs. Steps are found by E-Divisive change-point detection as Apache Otava
implements it (Hunter, Fleming et al. 2023, https://doi.org/10.1145/3578244.3583719); MongoDB's
signal-processing-algorithms cannot be installed beside this project, as its newest release wants
numpy<2 and setuptools<71 where pandas 3 needs numpy>=2 and torch 2.13 setuptools>=77.

Otava is fed log throughput, so that a step is a ratio whatever a cell's speed:

- from `PER_RUN_FROM` (8) runs on, one point per run: the mean of its repeats' logs. The run is what
  varies: repeats run back to back on one machine, so their spread understates night-to-night noise and
  a t-test over every repeat counts them as independent evidence. On flat series of 30 nights (3-5
  repeats, CV 5%, nights 3% apart) every repeat fed flagged 27 of 200, one point per run 2 of 200.
- below it, every repeat in time order: per run, two runs against one leave a t-test one degree of
  freedom, and a 15% step in 5 runs was found 107 times in 300 (300 fed every repeat; in 8 runs, 299).

1. Split, Otava's `split`: E-Divisive in sliding windows of `WINDOW` points (Otava's default) keeps each
   candidate whose t-test has p at most 10 × `alpha`, as Otava's compute_change_points does. One that
   falls between two repeats of a run moves to the nearest run boundary: a commit changes between runs.
2. Merge, Hunter's rule, done here: while the weakest point has p >= `alpha` (Otava's max_pvalue), or
   the smallest has |ratio - 1| <= `threshold` (its min_magnitude), drop it, test every point again
   against its new neighbours, repeat. Otava 0.8's own merge retests the point after the one dropped,
   not the one before (apache/otava#96 suspects as much), and so lost drifts: nights 10-14 at 2% a night
   split at 10 and 12; 12 went, and 10, still judged on 10-12 alone, went too. Its magnitude is also a
   ratio of the arithmetic means it was fed, meaningless for logs: here it is the step's ratio.

A step's ratio is the geometric mean after / before over the samples of the segments either side; its
p is Otava's t-test between them. Defaults, from simulated nights (tests/results/test_history.py):
`threshold` 0.05 and `alpha` 0.0005. A drift of 2% a night after 10 flat nights (3-5 repeats, CV 3%)
is a step within 5 nights in 95% of 400 seeds (median 4; 98% at CV 2%, 92% with 1% between nights
too); flat series of 15-30 nights (CV 5-10%, 0 or 2% between nights) are flagged 53 times in 4,800.
The split is the best of many, so its p understates chance: at alpha 0.01, 7-18% of flat series were
flagged. At a threshold of 0.10 a drift is a step only once the runs after it average 10% below those
before, a median 8 nights in.

The step is reported between the last run before it and the first run after it: the commit range to
bisect, as `git bisect` wants it (good = before, bad = after).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import ConfigError
from bench.results.decision import interval
from bench.results.record import RunRecord

WINDOW = 50  # points in one E-Divisive window (Otava's default)
PER_RUN_FROM = 8  # runs: from this many on, one point per run; below it, every repeat


@dataclass
class Run:
    """One sweep's figures for one cell."""

    label: str  # the folder it came from
    commit: str | None
    date: str
    samples: list[float]  # each repeat's steady throughput

    @property
    def median(self) -> float:
        return float(np.median(self.samples))


def series(runs: dict[str, list[RunRecord]]) -> dict[str, list[Run]]:
    """cell id → its runs in time order, from {run label: that sweep's records}."""
    cells: dict[str, list[Run]] = {}
    for label, records in runs.items():
        by_cell: dict[str, list[RunRecord]] = {}
        for r in records:
            if r.ok and r.metrics and r.metrics.valid and r.metrics.throughput_steady:
                by_cell.setdefault(r.cell_id, []).append(r)
        for cell_id, group in by_cell.items():
            first = min(group, key=lambda r: r.started_at)
            commit = ((first.environment or {}).get("git") or {}).get("commit")
            cells.setdefault(cell_id, []).append(Run(label, commit, first.started_at,
                                                     [float(r.metrics.throughput_steady) for r in group]))
    return {cell: sorted(found, key=lambda run: run.date) for cell, found in sorted(cells.items())}


def steps(runs: list[Run], threshold: float = 0.05, alpha: float = 0.0005) -> list[dict]:
    """Step changes in one cell's series (E-Divisive via Otava, see the module docstring)."""
    split, tester = _otava()
    if len(runs) < 2:
        return []
    logs = [np.log(np.asarray(run.samples, dtype=float)) for run in runs]
    if len(runs) >= PER_RUN_FROM:
        points = [float(x.mean()) for x in logs]
        starts = np.arange(len(runs) + 1)  # run k starts at point k
    else:
        points = [float(v) for x in logs for v in x]
        starts = np.concatenate([[0], np.cumsum([len(x) for x in logs])])
    first_pass = alpha * 10 if alpha < 0.05 else (alpha * 2 if alpha < 0.5 else alpha)  # as Otava's
    # `points` is a list: Otava 0.8 ignores the window for an ndarray (it slices only lists)
    weak = split(points, window_len=WINDOW, max_pvalue=first_pass)
    at = sorted({int(np.abs(starts - cp.index).argmin()) for cp in weak} - {0, len(runs)})
    test = tester(alpha)
    while at:
        edges = [0, *at, len(runs)]
        judged = []
        for i, k in enumerate(at):
            lo, hi = edges[i], edges[i + 2]
            p = float(test.compare(points[starts[lo]:starts[k]], points[starts[k]:starts[hi]]).pvalue)
            ratio = float(np.exp(np.concatenate(logs[k:hi]).mean() - np.concatenate(logs[lo:k]).mean()))
            judged.append((k, ratio, p if p == p else 1.0))  # nan (two constant, equal segments): no step
        weakest = max(judged, key=lambda s: s[2])
        if weakest[2] < alpha:
            weakest = min(judged, key=lambda s: abs(s[1] - 1))
            if abs(weakest[1] - 1) > threshold:
                return [_step(runs, k, ratio, p) for k, ratio, p in judged]
        at.remove(weakest[0])
    return []


def _step(runs: list[Run], k: int, ratio: float, p: float) -> dict:
    last, first = runs[k - 1], runs[k]
    return {"after_index": k, "ratio": ratio, "p": p, "good": last.commit, "bad": first.commit,
            "good_run": last.label, "bad_run": first.label, "good_date": last.date, "bad_date": first.date}


def _otava():
    """Otava's split step and t-test, imported here: history is an optional extra."""
    try:
        from otava.analysis import TTestSignificanceTester, split
    except ImportError as e:
        raise ConfigError("change-point detection needs apache-otava: pip install 'segbench[history]'") from e
    return split, TTestSignificanceTester


def table(cells: dict[str, list[Run]]) -> list[dict]:
    """One row per cell and run: median and 95% bootstrap interval, for plots and JSON."""
    rows = []
    for cell, runs in cells.items():
        for run in runs:
            low, high = interval(run.samples)
            rows.append({"cell_id": cell, "run": run.label, "commit": run.commit, "date": run.date,
                         "median": run.median, "ci_low": low, "ci_high": high, "repeats": len(run.samples)})
    return rows
