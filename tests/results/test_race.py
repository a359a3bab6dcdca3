"""The race (bench.results.race): its rules on hand-made repeats, and its error rates and cost in
simulated races of planted cells with this VM's repeat noise (bench.calibration.race_sim)."""

from __future__ import annotations

import pytest

from bench.calibration.race_sim import PLANTED_MS, simulate
from bench.results import race


def racers(**samples: list[float]) -> list[race.Racer]:
    return [race.Racer(name, list(values)) for name, values in samples.items()]


def test_a_clearly_slower_cell_is_eliminated_and_the_leader_wins():
    cells = racers(fast=[25.0, 25.3, 24.8], slow=[16.6, 16.7, 16.5])
    look = race.step(cells, 3, 0.05, 0.05)
    assert look.leader == "fast" and look.eliminated == ["slow"] and look.decided == "winner"
    assert cells[1].eliminated_at == 3 and cells[1].eliminated_by == "fast"


def test_equal_cells_stay_in_and_one_repeat_decides_nothing():
    cells = racers(a=[10.0], b=[10.1])
    assert race.step(cells, 1, 0.05, 0.05).decided is None and all(r.racing for r in cells)
    tight = racers(a=[10.0, 10.01, 9.99, 10.0] * 2, b=[10.0, 10.02, 9.98, 10.01] * 2)
    assert race.step(tight, 2, 0.05, 0.05).decided == "tie within margin"


def test_a_race_the_budget_cannot_change_is_futile_and_names_its_tie_set():
    cells = racers(a=[10.0, 11.5, 9.0], b=[9.6, 10.8, 8.9])
    assert race.step(cells, 2, 0.05, 0.05, rounds_left=1).decided == "futile"
    tie = race.tie_spread(cells)
    assert tie["cells"] == ["a", "b"] and tie["spread_ci"][0] < 0 < tie["spread_ci"][1]


def test_the_looks_a_budget_allows():
    assert race.max_looks(0) == 1 and race.max_looks(7.9) == 8


@pytest.mark.parametrize("planted", [PLANTED_MS, {"a": 40.0, "b": 40.0, "c": 44.0, "d": 60.0}],
                         ids=["40-44-60-50-50", "two-equal-fastest"])
def test_simulated_races_name_a_wrong_winner_rarely_keep_the_fastest_and_cost_less_than_a_grid(planted):
    result = simulate(races=250, ms=planted, seed=7)
    raced, grid = result["race"], result["grid"]
    assert raced["wrong_sole_winner"] <= 0.05  # two equal fastest: any sole winner is wrong
    assert raced["tie_without_fastest"] == 0.0
    assert raced["mean_repeats"] < grid["mean_repeats"]


def test_a_clear_winner_is_found_in_simulation_every_time():
    result = simulate(races=200, ms={"a": 40.0, "c": 60.0}, seed=3)
    raced, grid = result["race"], result["grid"]
    assert raced["wrong_sole_winner"] == 0.0 and raced["sole_winner"] >= 0.9  # 5-18% noise, 5 rounds at most
    assert raced["mean_repeats"] < 0.75 * grid["mean_repeats"]


def test_a_gap_the_budget_can_resolve_is_not_futile():
    cells = racers(a=[10.0, 10.4, 9.7], b=[9.0, 9.3, 8.8])  # ~11% apart, ~3% spread: more rounds would tell
    assert race.step(cells, 2, 0.001, 0.05, rounds_left=20).decided is None
    assert race.step(cells, 2, 0.001, 0.05, rounds_left=0).decided == "futile"


def test_the_only_rankable_cell_is_not_called_a_winner():
    decision = {"outcome": "only", "margin": 0.05, "cells": [{"cell_id": "x", "samples": [1.0]}]}
    assert "only cell that could be ranked" in race.verdict(decision, {"x": "actors"})
