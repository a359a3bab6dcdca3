"""The race (bench.results.race) simulated on planted cells of known rates, with per-repeat noise drawn
from this VM's repeat CVs, against a fixed grid of repeats judged by the same test. What the tests and
`segbench bench race` check: how often the race names a wrong sole winner, whether every tie set it
names holds the true fastest, and what each approach spends (in repeats: a repeat of any cell costs
about the same, since each runs to the same stopping rules).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.results import race

PLANTED_MS = {"a": 40.0, "b": 44.0, "c": 60.0, "d": 50.0, "e": 50.0}  # ms per image; "a" is the fastest
CV_RANGE = (0.05, 0.18)  # repeat CVs measured on this VM kind


@dataclass
class Outcome:
    kind: str  # winner | tie | none
    chosen: list[str]  # the winner, or the tie set
    repeats: int


def run_race(ms: dict[str, float], rng: np.random.Generator, budget: int, margin: float = 0.05,
             alpha: float = 0.05, cvs: dict[str, float] | None = None) -> Outcome:
    cvs = cvs or {c: rng.uniform(*CV_RANGE) for c in ms}
    racers = [race.Racer(c) for c in ms]

    def measure(r: race.Racer) -> None:
        sigma = np.sqrt(np.log1p(cvs[r.cell_id] ** 2))
        r.samples.append(1000.0 / ms[r.cell_id] * float(np.exp(rng.normal(-sigma ** 2 / 2, sigma))))

    spent, look, level, looks = 0, 0, alpha, 1
    while True:  # the loop of bench.sweep.decide, with repeats for seconds
        todo = [r for r in racers if r.racing]
        if look and (spent + len(todo) > budget or look >= looks):
            break
        for r in todo:
            measure(r)
        spent += len(todo)
        look += 1
        if look == 1:
            looks = race.max_looks((budget - spent) / 2)
            level = alpha / looks
        racing = sum(r.racing for r in racers)
        result = race.step(racers, look, level, margin, (budget - spent) // max(1, racing))
        if result.decided == "winner":
            return Outcome("winner", [result.leader], spent)
        if result.decided:
            return Outcome("tie", [r.cell_id for r in racers if r.racing], spent)
    return Outcome("tie", [r.cell_id for r in racers if r.racing], spent)


def run_grid(ms: dict[str, float], rng: np.random.Generator, repeats: int = 5, margin: float = 0.05,
             alpha: float = 0.05) -> Outcome:
    """Every cell `repeats` times, then one look of the same test at the whole α."""
    cvs = {c: rng.uniform(*CV_RANGE) for c in ms}
    racers = [race.Racer(c) for c in ms]
    for r in racers:
        sigma = np.sqrt(np.log1p(cvs[r.cell_id] ** 2))
        r.samples = [1000.0 / ms[r.cell_id] * float(np.exp(rng.normal(-sigma ** 2 / 2, sigma))) for _ in range(repeats)]
    result = race.step(racers, 1, alpha, margin)  # one look, at α itself
    if result.decided == "winner":
        return Outcome("winner", [result.leader], repeats * len(ms))
    return Outcome("tie", [r.cell_id for r in racers if r.racing], repeats * len(ms))


def simulate(races: int = 400, ms: dict[str, float] | None = None, seed: int = 0, margin: float = 0.05) -> dict:
    """Error rates and costs of the race and of the 5-repeat grid over `races` simulated races."""
    ms = ms or PLANTED_MS
    fastest = {c for c, v in ms.items() if v == min(ms.values())}
    rng = np.random.default_rng(seed)
    grid_cost = 5 * len(ms)
    summary = {}
    for name, run in (("race", lambda: run_race(ms, rng, grid_cost, margin)), ("grid", lambda: run_grid(ms, rng))):
        outcomes = [run() for _ in range(races)]
        winners = [o for o in outcomes if o.kind == "winner"]
        ties = [o for o in outcomes if o.kind == "tie"]
        summary[name] = {
            "races": races,
            "sole_winner": len(winners) / races,
            "wrong_sole_winner": sum(o.chosen[0] not in fastest or len(fastest) > 1 for o in winners) / races,
            "tie_without_fastest": sum(not fastest & set(o.chosen) for o in ties) / races,
            "mean_repeats": float(np.mean([o.repeats for o in outcomes])),
        }
    return summary
