"""Where a cell's steady state begins, how sure its steady throughput is, and whether it has run long
enough: one definition each, used while the cell runs (to stop it) and on its record (to judge it). Pure
numpy over per-batch arrays; no torch, no Ray.

- **Warm-up is found, not assumed.** Per worker, the steady part starts where its per-batch service time
  (`ended − started`) has settled, by MSER (White 1997: the truncation point d in the first half that
  minimises the variance of the mean of what remains, Σ(x−x̄)²/(n−d)²). MSER's minimum wanders late in
  plain noise (on 60 settled batches it cut 25 or more one time in ten here, in simulation), so the cut
  is the earliest d scoring within 10% of the minimum: a slow start of 7 batches is still cut at 7, and
  settled batches lose none. MSER-5 (groups of 5) was tried: it cuts in steps of 5 (10 for that slow
  start) and over-truncated plain noise as often. `warmup_batches` is a floor. The window opens when the
  last worker's last warm-up batch reached the driver.
- **The interval of the steady throughput** uses batch means on the driver's clock: the steady
  completions, in order, are cut into k consecutive groups (5 ≤ k ≤ 20, at least 2 completions each);
  group g covers x_g images in d_g seconds (from the previous group's last completion). Throughput is
  the ratio estimator R = Σx/Σd (= steady images ÷ window), and its variance the ratio estimator's,
  Σ(x_g − R·d_g)²/((k−1)·k·d̄²); the 95% half-width uses Student's t with k−1 degrees of freedom.
  Consecutive groups, not i.i.d. batches, so serial correlation (bursty delivery, a slow minute) widens
  the interval instead of hiding in it.
- **The stopping rules** (after MLPerf LoadGen's min_duration + min_query_count): a steady window of
  `min_steady_s`, `min_steady_batches` steady batches from every worker, and, when asked, a relative
  half-width of at most `target_rel_ci`. What is unmet is said in words; a cell that ends unmet is
  invalid for those reasons.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
from scipy import stats  # at import, before any clock: its first import took ~0.3 s inside a window here

MSER_TOLERANCE = 1.10  # the earliest cut scoring within 10% of the best (MSER over-truncates in plain noise)
GROUPS_MIN, GROUPS_MAX = 5, 20  # batch means: groups of consecutive steady completions


def settled_at(service: np.ndarray, floor: int) -> int:
    """Batches of one worker (in completion order) to drop as warm-up: MSER's truncation, at least `floor`."""
    n = len(service)
    if n <= floor:
        return n
    x = np.asarray(service, dtype=float)
    # Suffix sums give every candidate's score in one pass: Σ(x−x̄)² = Σx² − (Σx)²/m over the m kept.
    kept = np.arange(n, 0, -1, dtype=float)
    total, squares = np.cumsum(x[::-1])[::-1], np.cumsum((x * x)[::-1])[::-1]
    scores = np.maximum(squares - total * total / kept, 0.0) / kept ** 2
    scores = scores[: n // 2 + 1]  # the first half only, as MSER prescribes
    cut = int(np.flatnonzero(scores <= scores.min() * MSER_TOLERANCE + 1e-18)[0])
    return max(floor, cut)


@dataclass
class SteadyState:
    opens: float | None  # driver-clock instant the window opens; None: some worker has no settled batch yet
    warmup_per_worker: dict[str, int]  # batches each worker spent warming up
    batches_per_worker: dict[str, int]  # steady batches each worker completed
    images: int = 0
    window_s: float = 0.0
    throughput: float | None = None
    rel_half_width: float | None = None  # of the 95% interval; None with too few completions for k ≥ 5
    groups: int = 0
    mask: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # steady rows, input order


def steady_state(worker: np.ndarray, completed: np.ndarray, service: np.ndarray, images: np.ndarray,
                 warmup_floor: int, cuts: dict[str, int] | None = None, closes: float | None = None) -> SteadyState:
    """The steady window of one run's batches (arrays in any order; one row a batch). `cuts`: each
    worker's warm-up batches as already decided (the check that stopped the run), instead of MSER's.
    `closes`: the instant the run was told to stop; what completes later is the pipeline draining (fewer
    busy workers, a pool's last chunk), not steady state, and stays out of the window."""
    worker = np.asarray(worker, dtype=object)
    completed = np.asarray(completed, dtype=float)
    service = np.asarray(service, dtype=float)
    images = np.asarray(images, dtype=float)
    names = list(dict.fromkeys(worker.tolist()))
    warmup, last_warm, settled = {}, [0.0], True
    for name in names:
        rows = np.flatnonzero(worker == name)
        rows = rows[np.argsort(completed[rows], kind="stable")]
        cut = cuts.get(str(name)) if cuts else None
        cut = min(settled_at(service[rows], warmup_floor) if cut is None else cut, len(rows))
        warmup[str(name)] = int(cut)
        settled = settled and cut < len(rows)
        if cut:
            last_warm.append(float(completed[rows[cut - 1]]))
    if not settled or (not names and warmup_floor):
        return SteadyState(None, warmup, {str(n): 0 for n in names})
    opens = max(last_warm)  # every worker's warm-up batches completed by then
    mask = completed > opens
    if closes is not None:
        mask &= completed <= closes
    per_worker = {str(n): int(mask[worker == n].sum()) for n in names}
    if not mask.any():
        return SteadyState(opens, warmup, per_worker, mask=mask)
    order = np.argsort(completed[mask], kind="stable")
    done, sizes = completed[mask][order], images[mask][order]
    window = float(done[-1] - opens)
    total = float(sizes.sum())
    state = SteadyState(opens, warmup, per_worker, int(total), window, total / window if window > 0 else None,
                        mask=mask)
    state.rel_half_width, state.groups = _batch_means(done, sizes, opens)
    return state


def _batch_means(done: np.ndarray, sizes: np.ndarray, opens: float) -> tuple[float | None, int]:
    """Relative 95% half-width of the ratio estimator over k groups of consecutive completions."""
    k = min(GROUPS_MAX, len(done) // 2)
    if k < GROUPS_MIN:
        return None, k
    edges = np.linspace(0, len(done), k + 1).round().astype(int)
    ends = done[edges[1:] - 1]
    starts = np.concatenate([[opens], ends[:-1]])
    d = ends - starts
    x = np.add.reduceat(sizes, edges[:-1])
    if d.sum() <= 0:
        return None, k
    ratio = x.sum() / d.sum()
    variance = float(((x - ratio * d) ** 2).sum()) / ((k - 1) * k * d.mean() ** 2)
    half = float(stats.t.ppf(0.975, k - 1)) * variance ** 0.5
    return float(half / ratio), k


@dataclass(frozen=True)
class Rules:
    """When a cell has measured enough (bench.config.RunSpec carries these)."""

    min_steady_s: float
    min_steady_batches: int
    target_rel_ci: float | None = None
    workers: int = 0  # workers the cell planned: each must have returned, or the cell ran short-handed

    def unmet(self, state: SteadyState, warmup_floor: int) -> list[str]:
        """What the run has not yet met, in words; empty when every rule holds."""
        if state.opens is None or not state.batches_per_worker:
            return [f"no batch completed after every worker's {warmup_floor} warm-up batch(es) and the settling "
                    "of its service time"]
        reasons = []
        if len(state.batches_per_worker) < self.workers:
            reasons.append(f"{len(state.batches_per_worker)} of {self.workers} planned workers returned a batch")
        short = {w: n for w, n in sorted(state.batches_per_worker.items()) if n < self.min_steady_batches}
        if short:
            reasons.append(f"fewer than {self.min_steady_batches} steady batches from "
                           + ", ".join(f"{w} ({n})" for w, n in short.items()))
        if state.window_s < self.min_steady_s:
            reasons.append(f"steady window {state.window_s:.2f} s is shorter than {self.min_steady_s:g} s")
        if self.target_rel_ci is not None:
            if state.rel_half_width is None:
                reasons.append(f"too few steady completions for an interval (need {2 * GROUPS_MIN}, have "
                               f"{int(sum(state.batches_per_worker.values()))})")
            elif state.rel_half_width > self.target_rel_ci:
                reasons.append(f"95% interval ±{state.rel_half_width:.1%} is wider than the target "
                               f"±{self.target_rel_ci:.1%}")
        return reasons


class Watch:
    """The rules checked while a cell runs, on the batches so far: a few floats a batch (not the images),
    and a check at most every `every_s` seconds, so the driver's cost stays small however long the run."""

    def __init__(self, rules: Rules, warmup_floor: int, every_s: float = 0.5) -> None:
        self.rules, self.warmup_floor, self.every_s = rules, warmup_floor, every_s
        self._worker: list[str] = []
        self._columns = (array("d"), array("d"), array("d"))  # completed, service, images
        self._checked = -float("inf")
        self.cuts: dict[str, int] | None = None  # each worker's warm-up at the last check

    def add(self, worker: str, completed: float, service: float, images: int) -> None:
        self._worker.append(worker)
        for column, value in zip(self._columns, (completed, service, images), strict=True):
            column.append(value)

    def unmet(self, now: float) -> list[str] | None:
        """What is still unmet (empty: every rule holds); None when it is not yet time to check again."""
        if now - self._checked < self.every_s:
            return None
        self._checked = now
        state = steady_state(np.asarray(self._worker, dtype=object), *map(np.frombuffer, self._columns),
                             warmup_floor=self.warmup_floor)
        self.cuts = state.warmup_per_worker
        return self.rules.unmet(state, self.warmup_floor)
