"""The regression gate's statistics, on plain numbers (no Ray, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.measure.stats import holm, log_ratio_test
from bench.results.compare import compare_cell, decide
from bench.results.record import RunRecord

# Steady img/s of the ray_data a1 cell, 5 repeats each, from two nightly sweeps of an unchanged tree
# on the 2-core AMD EPYC VM (2026-11-23): the uncorrected Mann–Whitney gate called this a regression.
UNCHANGED_BASE = [2.57, 2.82, 3.14, 2.79, 2.58]
UNCHANGED_CAND = [2.73, 2.53, 2.12, 2.48, 2.36]


def _records(cell: str, values: list[float]) -> list[RunRecord]:
    spec = {"strategy": cell, "model": "b0", "device": "cpu", "batch_size": 2, "actors": 1}
    return [RunRecord.begin(spec, cell, {}, repeat=i, status="ok", metrics={"throughput_steady": v, "valid": True})
            for i, v in enumerate(values)]


def _gate(cells: dict[str, tuple[list[float], list[float]]], threshold: float = 0.10) -> dict[str, str]:
    compared = [compare_cell(_records(name, b), _records(name, c)) for name, (b, c) in cells.items()]
    decide(compared, threshold, alpha=0.05)
    return {c.cell_id: c.verdict for c in compared}


def test_holm_matches_the_textbook_example():
    # Holm (1979): sorted p times (m − rank), made monotone.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.9]) == [0.9]


def test_log_ratio_is_the_geometric_mean_ratio_with_an_interval_around_it():
    ratio, (low, high), p = log_ratio_test(np.array([2.0, 2.2, 1.8, 2.1]), np.array([1.0, 1.1, 0.9, 1.05]))
    assert ratio == pytest.approx(0.5) and low < 0.5 < high and p < 0.001
    ratio, ci, p = log_ratio_test(np.array([3.0, 3.0, 3.0]), np.array([3.0, 3.0, 3.0]))
    assert ratio == 1.0 and ci == (1.0, 1.0) and p == 1.0


def test_the_unchanged_tree_that_failed_the_old_gate_passes():
    noise = {f"cell{i}": ([3.0, 3.1, 2.9, 3.05, 2.95], [3.02, 2.97, 3.08, 2.93, 3.0]) for i in range(8)}
    verdicts = _gate({"ray_data": (UNCHANGED_BASE, UNCHANGED_CAND), **noise})
    assert set(verdicts.values()) == {"unchanged"}


def test_one_cell_alone_is_not_corrected_into_silence():
    # The same samples in a one-cell comparison: raw p < 0.05 and a ratio past 10% → flagged.
    assert _gate({"ray_data": (UNCHANGED_BASE, UNCHANGED_CAND)}) == {"ray_data": "regression"}


def test_a_clear_regression_is_caught_among_noisy_cells():
    rng = np.random.default_rng(0)
    cells = {f"cell{i}": (list(3 * np.exp(rng.normal(0, 0.07, 5))), list(3 * np.exp(rng.normal(0, 0.07, 5))))
             for i in range(8)}
    slow = 3 * 0.6 * np.exp(rng.normal(0, 0.07, 5))
    cells["slow"] = (list(3 * np.exp(rng.normal(0, 0.07, 5))), list(slow))
    verdicts = _gate(cells)
    assert verdicts.pop("slow") == "regression" and set(verdicts.values()) == {"unchanged"}


def test_improvements_mirror_regressions_and_few_samples_use_the_threshold_alone():
    assert _gate({"fast": ([3.0, 3.1, 2.9, 3.0], [4.5, 4.6, 4.4, 4.5])}) == {"fast": "improvement"}
    compared = compare_cell(_records("x", [3.0, 3.0]), _records("x", [2.0, 2.0]))
    decide([compared], 0.10, 0.05)
    assert compared.verdict == "regression" and compared.p_value is None and "threshold only" in compared.note
