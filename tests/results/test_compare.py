"""The regression gate's statistics, on plain numbers (no Ray, no torch)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.results.compare import compare, compare_cell, decide, detectable_summary, minimum_detectable
from bench.results.measured import Metrics
from bench.results.record import RunRecord
from bench.results.store import write_atomic
from bench.stats import holm, log_ratio_test

# Steady img/s of the ray_data a1 cell, 5 repeats each, from two nightly sweeps of an unchanged tree
# on the 2-core AMD EPYC VM (2026-11-23): the uncorrected Mann–Whitney gate called this a regression.
UNCHANGED_BASE = [2.57, 2.82, 3.14, 2.79, 2.58]
UNCHANGED_CAND = [2.73, 2.53, 2.12, 2.48, 2.36]


def _records(cell: str, values: list[float]) -> list[RunRecord]:
    spec = {"strategy": cell, "model": "b0", "device": "cpu", "batch_size": 2, "actors": 1}
    return [RunRecord.begin(spec, cell, {}, repeat=i, status="ok", metrics=Metrics(throughput_steady=v, valid=True))
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


def test_the_unchanged_tree_that_failed_the_old_gate_is_no_regression():
    # Not flagged after Holm; but its repeats are too noisy to show it within ±10%: unknown, never a pass.
    noise = {f"cell{i}": ([3.0, 3.1, 2.9, 3.05, 2.95], [3.02, 2.97, 3.08, 2.93, 3.0]) for i in range(8)}
    verdicts = _gate({"ray_data": (UNCHANGED_BASE, UNCHANGED_CAND), **noise})
    assert verdicts.pop("ray_data") == "unknown" and set(verdicts.values()) == {"unchanged"}


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
    # 7% noise with 5 repeats cannot show a cell within ±10% (unknown), but flags none of them.
    assert verdicts.pop("slow") == "regression" and set(verdicts.values()) <= {"unchanged", "unknown"}


def test_improvements_mirror_regressions_and_few_samples_use_the_threshold_alone():
    assert _gate({"fast": ([3.0, 3.1, 2.9, 3.0], [4.5, 4.6, 4.4, 4.5])}) == {"fast": "improvement"}
    compared = compare_cell(_records("x", [3.0, 3.0]), _records("x", [2.0, 2.0]))
    decide([compared], 0.10, 0.05)
    assert compared.verdict == "regression" and compared.p_value is None and "threshold only" in compared.note


def test_the_minimum_detectable_slowdown_follows_the_noise_and_the_repeats():
    rng = np.random.default_rng(0)
    quiet, noisy = (np.exp(rng.normal(0, cv, 5)) for cv in (0.03, 0.10))
    assert minimum_detectable(quiet, quiet * 1.01, 0.05) < minimum_detectable(noisy, noisy * 1.01, 0.05)
    many = np.exp(rng.normal(0, 0.10, 20))
    assert minimum_detectable(many, many, 0.05) < minimum_detectable(noisy, noisy, 0.05)
    # Stricter alpha (more cells in the family) needs a larger effect; fewer than 2 samples: undefined.
    assert minimum_detectable(noisy, noisy, 0.05 / 9) > minimum_detectable(noisy, noisy, 0.05)
    assert minimum_detectable(noisy[:1], noisy, 0.05) is None


@pytest.mark.parametrize("floor", [0.01, 0.10])
def test_a_slowdown_the_size_of_the_detectable_one_is_mostly_caught(floor):
    """The power claim checked by simulation, with a floor below and above what the test alone
    resolves: at the detectable size, most planted slowdowns are flagged."""
    rng = np.random.default_rng(1)
    caught, trials = 0, 300
    for _ in range(trials):
        base, cand_noise = np.exp(rng.normal(0, 0.04, 5)), np.exp(rng.normal(0, 0.04, 5))
        size = minimum_detectable(base, cand_noise, 0.05, floor)
        cand = np.exp(rng.normal(np.log(1 - size), 0.04, 5))
        cell = compare_cell(_records("x", list(base)), _records("x", list(cand)))
        decide([cell], 0.05, 0.05, floor)
        caught += cell.verdict == "regression"
    assert caught / trials > 0.6  # 80% nominal: the size is estimated from the same noisy samples


def _write(folder: Path, cell: str, values: list[float], fingerprint: str, probe_s: float | None) -> Path:
    for i, v in enumerate(values):
        record = RunRecord.begin({"strategy": cell, "model": "b0", "device": "cpu", "batch_size": 2, "actors": 1},
                                 cell, {"fingerprint": fingerprint, "cpu_logical": 2, "packages": {"torch": "2.13"}},
                                 repeat=i, status="ok", metrics=Metrics(throughput_steady=v, valid=True),
                                 machine_probe={"b0_forward_s": probe_s} if probe_s else None)
        write_atomic(folder / "runs" / cell / f"r{i}.json", record.to_dict())
    return folder


def test_across_machines_divides_each_side_by_its_probe(tmp_path):
    """A machine 1.5× faster on the probe and on the cell: normalised ratio 1; a real 20% slowdown on top
    of the faster machine still shows."""
    slow = [2.00, 2.06, 1.96, 2.02, 1.98]
    base = _write(tmp_path / "a", "actors", slow, "machine-a", 0.30)
    same = _write(tmp_path / "b", "actors", [v * 1.5 for v in slow], "machine-b", 0.20)
    slower = _write(tmp_path / "c", "actors", [v * 1.5 * 0.8 for v in slow], "machine-b", 0.20)
    raw = compare([base], [same], 0.10)
    assert raw.cells[0].verdict == "improvement"  # what a gate without the probe says
    (cell,) = compare([base], [same], 0.10, normalise=True).cells
    assert cell.verdict == "unchanged" and cell.ratio == pytest.approx(1.0) and cell.probe_ratio == pytest.approx(1.5)
    result = compare([base], [slower], 0.10, normalise=True)
    assert result.cells[0].verdict == "regression" and result.cells[0].ratio == pytest.approx(0.8)
    assert "cannot remove" in result.caveats and "cores 2 vs 2" in result.caveats


def test_the_summary_line_says_what_an_unchanged_verdict_rules_out(tmp_path):
    base = _write(tmp_path / "a", "actors", [2.0, 2.1, 1.9, 2.05, 1.95], "m", None)
    cand = _write(tmp_path / "b", "actors", [2.02, 1.98, 2.1, 1.9, 2.0], "m", None)
    result = compare([base], [cand], 0.05)
    line = detectable_summary(result)
    assert result.cells[0].verdict == "unchanged" and result.cells[0].detectable > 0.05  # above the threshold
    assert f"{result.cells[0].detectable:.0%}" in line and "actors" in line and "1 tested of 1" in line


def test_noisy_probes_widen_the_interval_instead_of_adding_noise_per_repeat(tmp_path):
    """Each side is scaled by its pooled median probe; the median's uncertainty widens the interval."""
    values = [2.00, 2.06, 1.96, 2.02, 1.98]
    base = _write(tmp_path / "a", "actors", values, "machine-a", 0.30)
    steady = _write(tmp_path / "b", "actors", values, "machine-b", 0.30)
    noisy = tmp_path / "c"
    for i, probe in enumerate([0.24, 0.36, 0.30, 0.27, 0.33]):  # same median, 15% spread
        _write(noisy / str(i), "actors", [values[i]], "machine-b", probe)
        record = json.loads(next((noisy / str(i)).rglob("r0.json")).read_text())
        record["repeat"] = i
        write_atomic(noisy / "runs" / f"r{i}.json", record)
        shutil.rmtree(noisy / str(i))
    (calm,), (wide,) = (compare([base], [c], 0.10, normalise=True).cells for c in (steady, noisy))
    assert calm.ratio == pytest.approx(1.0) and wide.ratio == pytest.approx(1.0)
    assert wide.ci[1] - wide.ci[0] > calm.ci[1] - calm.ci[0] and wide.detectable > calm.detectable


def _onnx(values: list[float], agreement: float) -> list[RunRecord]:
    records = _records("actors", values)
    for r in records:
        r.spec["runtime"] = "onnxruntime"
        r.runtime_parity = {"runtime": "onnxruntime", "precision": "fp32", "images": 8, "pixel_agreement": agreement}
    return records


def test_a_runtime_that_turned_fast_and_wrong_fails_the_gate_and_one_always_below_its_floor_does_not():
    same = [5.0, 5.1, 4.9, 5.0, 5.05]
    broken = compare_cell(_onnx(same, 0.99999), _onnx([6.0, 6.1, 5.9, 6.0, 6.05], 0.90))
    assert broken.verdict == "failed" and "quality: agreement with fp32 eager 90" in broken.note
    always = compare_cell(_onnx(same, 0.90), _onnx(same, 0.90))
    assert always.verdict != "failed"
