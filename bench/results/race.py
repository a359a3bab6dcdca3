"""Racing configurations to a decision (after irace/F-race and Chromium Pinpoint): pure statistics over
each cell's repeats (steady img/s), no torch, no Ray. `bench.sweep.decide` runs the cells; this module
says, after each round, which cells are out, whether the race is decided, and how it ends.

The model. Repeats of a cell vary by a factor (this VM's repeat CVs: 5–18%), so everything is on log
throughput. A cell's variance is moderated (Smyth's limma, 2004): its own sample variance is pooled with
the race's, s̃² = (d₀·s₀² + (n−1)·s²)/(d₀ + n − 1), where s₀² pools every cell's spread with a prior of
`PRIOR_CV` worth `PRIOR_DF` degrees of freedom, and d₀ = `PRIOR_DF`. A
cell measured once still has an honest spread, and a cell measured many times is judged on its own.

Each round ("look") k:
- **Elimination.** The leader is the cell with the highest mean log throughput. Every other racing cell
  is tested against it, one-sided Welch t on the moderated variances: H₀ "the leader is not faster than
  this cell by more than the margin". The p-values are Holm-adjusted over the cells still racing, at
  α/K, K the most looks the budget allows (after the first round: one more per round of two cells), so
  repeated looking does not inflate the chance of eliminating the fastest cell (Bonferroni over the
  looks; α·6/(π²k²) was tried and spent too much on the first looks, where one repeat says little). A
  rejected cell is out, and stays out.
- **A sole winner** when every other cell is out: the leader beat each of them by more than the margin.
- **A tie within the margin** when the cells still racing are all within the margin of the leader by a
  two one-sided test at the same level (Pinpoint's SAME): more repeats would not change the answer that matters.
- **Futile** when every cell still racing has a spread of its own (two repeats or more) and, for each,
  the repeats the budget still holds could neither separate it from the leader by the margin nor show it
  within the margin, even were the gap one standard error more favourable than estimated (a sequential
  trial's futility stop): spending the rest would not change the answer.
- Otherwise the race goes on, until the budget ends. A race that ends undecided names the cells still
  racing as the tie set, with their spread (the leader over the slowest of them, with its interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from bench.stats import holm, tost

PRIOR_CV = 0.10  # before the race has spread of its own: a typical repeat CV here (2-9% quiet, 18% noisy)
PRIOR_DF = 4.0  # a prior worth four repeats: one repeat of each cell can already drop a clear loser


@dataclass
class Racer:
    cell_id: str
    samples: list[float] = field(default_factory=list)  # steady img/s of each valid repeat
    eliminated_at: int | None = None  # the look that eliminated it
    eliminated_by: str | None = None
    p_adjusted: float | None = None  # at its last test against the leader

    @property
    def racing(self) -> bool:
        return self.eliminated_at is None

    @property
    def logs(self) -> np.ndarray:
        return np.log(np.asarray(self.samples, dtype=float))


@dataclass
class Look:
    number: int
    alpha: float
    leader: str | None
    eliminated: list[str]
    decided: str | None  # "winner" | "tie within margin" | "futile" | None (go on)


def max_looks(rounds_after_first: float) -> int:
    """The most looks a race can take: the first, then one per round of at least two cells."""
    return 1 + max(0, int(rounds_after_first))


def moderated(racers: list[Racer]) -> dict[str, tuple[float, float]]:
    """Each cell's (variance of its log throughput, degrees of freedom), pooled as the module says."""
    prior = math.log1p(PRIOR_CV ** 2)
    own = [(len(r.samples) - 1, float(np.var(r.logs, ddof=1))) for r in racers if len(r.samples) > 1]
    pooled_df = PRIOR_DF + sum(df for df, _ in own)
    pooled = (PRIOR_DF * prior + sum(df * var for df, var in own)) / pooled_df
    d0 = PRIOR_DF  # the pooled spread weighs as much as the prior: it never drowns a cell's own
    out = {}
    for r in racers:
        n = len(r.samples)
        var = float(np.var(r.logs, ddof=1)) if n > 1 else 0.0
        out[r.cell_id] = ((d0 * pooled + (n - 1) * var) / (d0 + n - 1), d0 + n - 1)
    return out


def _welch(a: Racer, b: Racer, spread: dict) -> tuple[float, float, float]:
    """(mean log ratio a/b, its standard error, Welch–Satterthwaite degrees of freedom)."""
    (va, da), (vb, db) = spread[a.cell_id], spread[b.cell_id]
    qa, qb = va / len(a.samples), vb / len(b.samples)
    se = math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa ** 2 / da + qb ** 2 / db) if qa + qb > 0 else 1e9
    return float(a.logs.mean() - b.logs.mean()), se, df


def ratio_interval(a: Racer, b: Racer, racers: list[Racer], confidence: float = 0.95) -> tuple[float, float, float]:
    """Geometric-mean ratio a/b with its interval (moderated Welch t)."""
    diff, se, df = _welch(a, b, moderated(racers))
    t = float(stats.t.ppf(0.5 + confidence / 2, df))
    return math.exp(diff), math.exp(diff - t * se), math.exp(diff + t * se)


def leader(racers: list[Racer]) -> Racer | None:
    measured = [r for r in racers if r.racing and r.samples]
    return max(measured, key=lambda r: r.logs.mean()) if measured else None


def step(racers: list[Racer], look: int, level: float, margin: float, rounds_left: int | None = None) -> Look:
    """Test the cells still racing after this round at `level` (the race's α over its most looks); mark the
    eliminated ones; say if the race is decided. `rounds_left`: rounds the budget still holds (None:
    unbounded), for the futility rule."""
    best = leader(racers)
    others = [r for r in racers if r.racing and r.samples and r is not best]
    if best is None or not others:
        return Look(look, level, best.cell_id if best else None, [], "winner" if best else None)
    spread = moderated([r for r in racers if r.samples])
    shift = math.log1p(margin)
    p_values = []
    for other in others:
        diff, se, df = _welch(best, other, spread)
        p_values.append(float(stats.t.sf((diff - shift) / se, df)) if se > 0 else float(diff <= shift))
    eliminated = []
    for other, p in zip(others, holm(p_values), strict=True):
        other.p_adjusted = p
        if p <= level:
            other.eliminated_at, other.eliminated_by = look, best.cell_id
            eliminated.append(other.cell_id)
    remaining = [r for r in others if r.racing]
    if not remaining:
        return Look(look, level, best.cell_id, eliminated, "winner")
    # Two one-sided tests: every remaining cell within the margin of the leader, both ways.
    equivalent = []
    for other in remaining:
        diff, se, df = _welch(best, other, spread)
        equivalent.append(tost(diff, se, df, shift) <= level)
    if all(equivalent):
        return Look(look, level, best.cell_id, eliminated, "tie within margin")
    known = all(len(r.samples) > 1 for r in [best, *remaining])  # futility needs each cell's own spread
    if rounds_left is not None and known and not any(_reachable(best, other, spread, shift, level, rounds_left)
                                                     for other in remaining):
        return Look(look, level, best.cell_id, eliminated, "futile")
    return Look(look, level, best.cell_id, eliminated, None)


def _reachable(best: Racer, other: Racer, spread: dict, shift: float, level: float, rounds: int) -> bool:
    """Could `rounds` more repeats of each separate the two by the margin, or show them within it, if the
    present estimates held (the futility rule: a race that cannot change its answer in the budget stops)."""
    if rounds <= 0:
        return False
    diff, now, _ = _welch(best, other, spread)
    (vb, db), (vo, do) = spread[best.cell_id], spread[other.cell_id]
    se = math.sqrt(vb / (len(best.samples) + rounds) + vo / (len(other.samples) + rounds))
    critical = float(stats.t.isf(level, db + do + 2 * rounds))
    # Optimistic by one standard error of today's estimate: a gap estimated from few repeats may be larger
    # (or smaller) than it looks, and stopping for futility on an unlucky draw would throw the race away.
    return (abs(diff) + now - shift) / se >= critical or (shift - max(0.0, abs(diff) - now)) / se >= critical


def tie_spread(racers: list[Racer]) -> dict | None:
    """The cells still racing, the leader over the slowest of them, and that ratio's 95% interval."""
    best = leader(racers)
    rest = [r for r in racers if r.racing and r.samples and r is not best]
    if best is None or not rest:
        return None
    slowest = min(rest, key=lambda r: r.logs.mean())
    ratio, low, high = ratio_interval(best, slowest, [r for r in racers if r.samples])
    return {"cells": [best.cell_id, *sorted((r.cell_id for r in rest), key=lambda c: c)], "spread": ratio - 1,
            "spread_ci": [low - 1, high - 1]}


def verdict(decision: dict, names: dict[str, str]) -> str:
    """A decision.json's answer in one sentence; cells named by `names` (cell id → configuration)."""
    name = lambda cell_id: names.get(cell_id, cell_id)  # noqa: E731
    margin = decision.get("margin", 0.0)
    if decision.get("outcome") == "only":
        only = [c.get("cell_id") for c in decision.get("cells") or [] if isinstance(c, dict) and c.get("samples")]
        return f"{name(only[0]) if only else 'one cell'} is the only cell that could be ranked: nothing to race"
    if decision.get("outcome") == "winner" and decision.get("winner"):
        return (f"{name(decision['winner'])} is the fastest, ahead of every other cell by more than {margin:.0%} "
                "(95%)")
    tie = decision.get("tie")
    if not tie:
        return "no cell could be ranked"
    low, high = tie["spread_ci"]
    cells = [name(c) for c in tie["cells"]]
    joined = cells[0] if len(cells) == 1 else ", ".join(cells[:-1]) + " and " + cells[-1]
    return (f"{joined} are within {tie['spread']:.0%} of each other (95% interval of the spread {low:.0%} to "
            f"{high:.0%}); {decision.get('stopped_because', '')}")
