"""`segbench decide`: race a sweep's cells to a decision within a time budget (bench.results.race says
how each round is judged).

Round 1 runs every cell once under its stopping rules. Each later round runs every cell still racing
once more, in an order rotated each round (so no cell always runs first, after the same neighbour, or
in the same minute of the host's drift), while the budget still holds a whole round at the rounds'
measured cost. A cell below its quality floor (bench.results.quality: its maps' agreement with fp32
eager's) races no further, whatever its speed, and says why. Every repeat is an ordinary sweep record
under the decision's folder, so `report`, `compare` and `history` read a decision as they read a sweep.
Cells run in their own processes on a Ray instance shared by the decision, as a sweep's do
(bench.sweep.executor).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import strategies
from bench.results import quality, race
from bench.results.record import RunRecord
from bench.results.store import write_atomic
from bench.sweep.executor import host_info, run_isolated, shared_ray, signals_raise, write_plan
from bench.sweep.spec import SweepSpec, check_name


@dataclass
class Decision:
    folder: Path
    budget_s: float
    margin: float
    alpha: float
    racers: list[race.Racer]
    min_agreement: float | None = None  # the user's quality floor (None: each cell's own, else its default)
    looks: list[race.Look] = field(default_factory=list)
    spent_s: float = 0.0
    stopped_because: str = ""
    outcome: str = ""  # winner | only (the one rankable cell) | tie | none
    repeats: dict[str, int] = field(default_factory=dict)  # runs of each cell, valid or not
    not_rankable: dict[str, str] = field(default_factory=dict)  # cell → why it could not race
    skipped: list = field(default_factory=list)

    def to_dict(self) -> dict:
        leader = race.leader(self.racers)
        return {
            "kind": "segbench.decision", "budget_s": self.budget_s, "margin": self.margin, "alpha": self.alpha,
            "min_agreement": self.min_agreement,
            "spent_s": self.spent_s, "stopped_because": self.stopped_because, "outcome": self.outcome,
            "winner": leader.cell_id if self.outcome == "winner" and leader else None,
            "tie": race.tie_spread(self.racers) if self.outcome == "tie" else None,
            "cells": [{"cell_id": r.cell_id, "repeats": self.repeats.get(r.cell_id, 0), "samples": r.samples,
                       "eliminated_round": r.eliminated_at, "eliminated_by": r.eliminated_by,
                       "p_adjusted": r.p_adjusted, "not_rankable": self.not_rankable.get(r.cell_id)}
                      for r in self.racers],
            "rounds": [{"round": k.number, "alpha": k.alpha, "leader": k.leader, "eliminated": k.eliminated,
                        "decided": k.decided} for k in self.looks],
        }


def decision_folder(results_dir: Path, sweep: SweepSpec) -> Path:
    check_name(sweep.name)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return results_dir / "decisions" / sweep.name / stamp


def run_decide(sweep: SweepSpec, results_dir: Path, budget_s: float, margin: float, alpha: float = 0.05, *,
               ray_address: str | None = None, on_cell: Callable[[str], None] | None = None,
               folder: Path | None = None, min_agreement: float | None = None) -> Decision:
    started = time.monotonic()
    host = host_info()
    cells, skipped = sweep.expand(host)
    folder = folder or decision_folder(results_dir, sweep)
    write_plan(folder, sweep, host, cells, skipped)
    decision = Decision(folder, budget_s, margin, alpha, [race.Racer(c.cell_id) for c in cells], min_agreement,
                        skipped=skipped)
    by_id = {c.cell_id: c for c in cells}
    round_costs: list[float] = []  # seconds per cell run, each round
    level = alpha
    needs_ray = any(strategies.get(c.spec.strategy).uses_ray for c in cells)
    with shared_ray(needs_ray, ray_address) as address, signals_raise() as current:
        looks = 1  # the most looks α is split over, set after the first round
        for number in itertools.count(1):
            todo = [r for r in decision.racers if r.racing and r.cell_id not in decision.not_rankable]
            if not todo:
                decision.stopped_because = "no cell could be ranked"
                break
            todo = todo[(number - 1) % len(todo):] + todo[:(number - 1) % len(todo)]
            spent = time.monotonic() - started
            estimate = _round_estimate(round_costs, len(todo))
            if number > looks:  # later rounds may be cheaper than the first: α was split over `looks`
                decision.stopped_because = f"budget: α was split over the {looks} rounds the budget first allowed"
                break
            if number > 1 and spent + estimate > budget_s:
                decision.stopped_because = (f"budget: {budget_s - spent:.0f} s left, a round of {len(todo)} cell(s) "
                                            f"takes about {estimate:.0f} s")
                break
            clock = time.monotonic()
            for racer in todo:
                spec = by_id[racer.cell_id].spec
                if strategies.get(spec.strategy).uses_ray:
                    spec = spec.replace(ray_address=address)
                if on_cell:
                    on_cell(f"round {number}: {racer.cell_id}")
                record = run_isolated(spec, folder, number - 1, sweep, current)
                decision.repeats[racer.cell_id] = decision.repeats.get(racer.cell_id, 0) + 1
                sample, why = _sample(record)
                short = quality.below_floor(record, min_agreement) if sample is not None else None
                if short:  # its maps are below its floor: out of the race, whatever it measured before
                    racer.samples.clear()
                    decision.not_rankable[racer.cell_id] = short
                elif sample is not None:
                    racer.samples.append(sample)
                elif not racer.samples:
                    decision.not_rankable[racer.cell_id] = why
            round_costs.append((time.monotonic() - clock) / max(1, len(todo)))
            for racer in decision.racers:  # a cell that never measured cannot race
                if racer.cell_id in decision.not_rankable and racer.racing:
                    racer.eliminated_at, racer.eliminated_by = number, "not rankable"
            left = budget_s - (time.monotonic() - started)
            if number == 1:  # the most looks the rest of the budget allows, at this round's cost per cell
                looks = race.max_looks(left / max(1e-9, _round_estimate(round_costs, 2)))
                level = alpha / looks
            racing = sum(r.racing for r in decision.racers)
            rounds_left = int(left // max(1e-9, _round_estimate(round_costs, racing)))
            look = race.step(decision.racers, number, level, margin, max(0, rounds_left))
            decision.looks.append(look)
            if look.decided:
                decision.stopped_because = {
                    "winner": "decided: the leader clears every other cell by the margin",
                    "tie within margin": "decided: the cells still racing are within the margin of each other",
                    "futile": "futile: the rounds the budget still holds could not change the answer"}[look.decided]
                break
    decision.spent_s = time.monotonic() - started
    racing = [r for r in decision.racers if r.racing]
    beaten = [r for r in decision.racers if r.eliminated_at and r.cell_id not in decision.not_rankable]
    decision.outcome = ("winner" if len(racing) == 1 and beaten else "only" if len(racing) == 1
                        else "tie" if racing else "none")
    write_atomic(folder / "decision.json", decision.to_dict())
    return decision


def _round_estimate(costs: list[float], cells: int) -> float:
    """Seconds a round of `cells` takes: the mean cost of one cell so far (drift is slow next to a round)."""
    return cells * (sum(costs) / len(costs)) if costs else 0.0


def _sample(record: RunRecord) -> tuple[float | None, str]:
    """The repeat's steady throughput when it may race, else why not."""
    metrics = record.metrics
    if not record.ok:
        return None, f"{record.status}: {record.error}"
    if not (metrics and metrics.valid):
        return None, "invalid: " + "; ".join((metrics and metrics.invalid_reasons) or [])
    value = metrics.throughput_steady
    return (float(value), "") if value else (None, "no steady throughput")
