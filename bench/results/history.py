"""History across many sweeps (nightly runs over days and commits), as asv shows it: each cell's steady
throughput per run, with an interval, and the step changes with the commit range where each happened.

A run is one sweep folder: its records share a commit and a date. Per cell and run, the samples are the
repeats' steady throughputs. Step detection is binary segmentation on log throughput, documented here
because no maintained change-point library fits samples this small (ruptures wants a penalty tuned to
the noise, which a few repeats per run cannot give):

1. For a series of runs in time order, try every split point; for each, pool the repeat samples before
   and after and compute the ratio of geometric means and Welch's t-test on their logs.
2. Keep the split with the smallest p-value. It is a step when p < `alpha` and the ratio moved by more
   than `threshold` (either way).
3. Recurse into both sides (a later step is found within its own segment).

The step is reported between the last run before it and the first run after it: the commit range to
bisect, as `git bisect` wants it (good = before, bad = after).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from bench.results.decision import interval
from bench.results.record import RunRecord


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


def steps(runs: list[Run], threshold: float = 0.10, alpha: float = 0.01) -> list[dict]:
    """Step changes in one cell's series (binary segmentation, see the module docstring)."""
    found: list[dict] = []
    _segment(runs, 0, len(runs), threshold, alpha, found)
    return sorted(found, key=lambda s: s["after_index"])


def _segment(runs: list[Run], lo: int, hi: int, threshold: float, alpha: float, found: list[dict]) -> None:
    best = None
    for split in range(lo + 1, hi):
        before = np.log([v for run in runs[lo:split] for v in run.samples])
        after = np.log([v for run in runs[split:hi] for v in run.samples])
        if len(before) < 2 or len(after) < 2:
            continue
        p = float(stats.ttest_ind(after, before, equal_var=False).pvalue)
        ratio = float(np.exp(after.mean() - before.mean()))
        if best is None or p < best[0]:
            best = (p, split, ratio)
    if best is None:
        return
    p, split, ratio = best
    if p >= alpha or abs(ratio - 1) <= threshold:
        return
    last, first = runs[split - 1], runs[split]
    found.append({"after_index": split, "ratio": ratio, "p": p, "good": last.commit, "bad": first.commit,
                  "good_run": last.label, "bad_run": first.label, "good_date": last.date, "bad_date": first.date})
    _segment(runs, lo, split, threshold, alpha, found)
    _segment(runs, split, hi, threshold, alpha, found)


def table(cells: dict[str, list[Run]]) -> list[dict]:
    """One row per cell and run: median and 95% bootstrap interval, for plots and JSON."""
    rows = []
    for cell, runs in cells.items():
        for run in runs:
            low, high = interval(run.samples)
            rows.append({"cell_id": cell, "run": run.label, "commit": run.commit, "date": run.date,
                         "median": run.median, "ci_low": low, "ci_high": high, "repeats": len(run.samples)})
    return rows
