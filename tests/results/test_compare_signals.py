"""The gate's judgement over signals (throughput, cpu, service) and its three verdicts: regression
(significant after Holm over cells × signals, beyond the floor), unchanged (TOST within ±threshold),
unknown (neither: never a pass). Plain numbers: no Ray, no torch."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bench.cli.gating import _kept, gate, print_verdict
from bench.results.compare import (
    GATED_SIGNALS,
    SIGNAL_NAMES,
    CellComparison,
    Comparison,
    compare,
    compare_cell,
    decide,
    detectable_summary,
)
from bench.results.gate import UNGATED_EXIT, Verdict, judge
from bench.results.measured import Metrics
from bench.results.record import RunRecord
from bench.results.store import write_atomic

SPEC = {"model": "b0", "device": "cpu", "batch_size": 2, "actors": 1}


def _metrics(throughput: float, cpu: float | None, service: float | None) -> Metrics:
    """Rates in (img/s, images per CPU-second, batches per service second), as a record holds them."""
    return Metrics(throughput_steady=throughput, valid=True,
                   cpu_s_per_image=None if cpu is None else 1 / cpu,
                   service_s=None if service is None else {"p50": 1 / service})


def _records(cell: str, throughput: list[float], cpu: list[float] | None = None,
             service: list[float] | None = None) -> list[RunRecord]:
    return [RunRecord.begin({"strategy": cell, **SPEC}, cell, {}, repeat=i, status="ok",
                            metrics=_metrics(t, cpu[i] if cpu else None, service[i] if service else None))
            for i, t in enumerate(throughput)]


def _spread(centre: float, cv: float, n: int, seed: int) -> list[float]:
    """n values around `centre` whose log sample has mean exactly log(centre) and sd `cv`."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return list(centre * np.exp(cv * z))


def _judge(cells: dict[str, tuple[list[RunRecord], list[RunRecord]]], threshold: float = 0.05,
           alpha: float = 0.05, **kwargs) -> dict[str, CellComparison]:
    compared = [compare_cell(b, c) for b, c in cells.values()]
    decide(compared, threshold, alpha, **kwargs)
    return {c.cell_id: c for c in compared}


def test_the_signals_are_listed_once_and_all_are_gated():
    assert SIGNAL_NAMES == ("throughput", "cpu", "service")
    assert set(GATED_SIGNALS) <= set(SIGNAL_NAMES) and GATED_SIGNALS[0] == "throughput"


def test_a_5_percent_slowdown_seen_only_in_a_quiet_cpu_signal_is_flagged_by_cpu():
    """Throughput (10% noise) and service (6%) cannot see a 5% compute slowdown; cpu (0.5%) can."""
    base = _records("x", _spread(3.0, 0.10, 5, 1), _spread(10.0, 0.005, 5, 2), _spread(2.0, 0.06, 5, 3))
    cand = _records("x", _spread(3.0 * 0.97, 0.10, 5, 4), _spread(10.0 * 0.95, 0.005, 5, 5),
                    _spread(2.0, 0.06, 5, 6))
    cell = _judge({"x": (base, cand)})["x"]
    assert cell.judged_on == ["throughput", "cpu"]  # cpu: the most precise other signal
    assert cell.verdict == "regression" and cell.flagged_by == ["cpu"]
    assert cell.signals["cpu"].ratio == pytest.approx(0.95)
    assert cell.signals["throughput"].p_slower_adjusted > 0.05  # throughput alone would not have seen it


def test_a_tight_unchanged_cell_is_unchanged_by_the_equivalence_test():
    base = _records("x", _spread(3.0, 0.005, 5, 1))
    cand = _records("x", _spread(3.0 * 1.002, 0.005, 5, 2))
    cell = _judge({"x": (base, cand)})["x"]
    assert cell.verdict == "unchanged" and cell.tost_p < 0.05 and cell.reach < 0.05 and not cell.flagged_by


def test_a_noisy_unchanged_cell_with_few_repeats_is_unknown_and_never_passes():
    base = _records("x", _spread(3.0, 0.08, 3, 1))
    cand = _records("x", _spread(3.0, 0.08, 3, 2))
    cell = _judge({"x": (base, cand)})["x"]
    assert cell.verdict == "unknown" and cell.tost_p >= 0.05 and cell.reach > 0.05
    assert cell.note.startswith("needs more rounds: ±") and "at 95% vs threshold 5%" in cell.note
    verdict = Verdict(Comparison([cell]), 0.05, 0.05, across_machines=False)
    assert verdict.ungated == [cell] and verdict.gated == []
    assert verdict.exit_code() == UNGATED_EXIT == 3 and verdict.exit_code(allow_ungated=True) == 0


def test_a_significant_slowdown_below_the_floor_is_never_flagged():
    base = _records("x", _spread(3.0, 0.002, 5, 1))
    cand = _records("x", _spread(3.0 * 0.985, 0.002, 5, 2))
    cell = _judge({"x": (base, cand)})["x"]
    assert cell.signals["throughput"].p_slower_adjusted < 1e-4  # significant, yet 1.5% < the 2% floor
    assert cell.verdict == "unchanged" and cell.flagged_by == []
    assert _judge({"x": (base, cand)}, floor=0.01)["x"].verdict == "regression"  # a lower floor flags it


def test_holm_runs_over_every_test_cells_times_signals():
    """A slowdown significant alone (p ≈ 0.01) is not after correction over 5 cells × 2 signals."""
    slow = (_records("slow", [3.0, 3.06, 2.94, 3.03, 2.97]), _records("slow", [2.94, 2.94, 2.87, 2.94, 2.87]))
    alone = _judge({"slow": slow})["slow"]
    p = alone.signals["throughput"].p_slower
    assert 0.005 < p < 0.01 and alone.verdict == "regression" and alone.flagged_by == ["throughput"]

    quiet = _spread(10.0, 0.05, 5, 7)
    cells = {"slow": tuple(_records("slow", [r.metrics.throughput_steady for r in side], quiet, quiet)
                           for side in slow)}
    for i in range(4):
        cells[f"c{i}"] = (_records(f"c{i}", _spread(3.0, 0.02, 5, 10 + i), quiet, _spread(5.0, 0.001, 5, 20 + i)),
                          _records(f"c{i}", _spread(3.0, 0.02, 5, 30 + i), quiet, _spread(5.0, 0.001, 5, 40 + i)))
    judged = _judge(cells)
    assert all(len(c.judged_on) == 2 for c in judged.values())  # 10 tests in all
    slow_cell = judged["slow"]
    assert slow_cell.signals["throughput"].p_slower_adjusted == pytest.approx(min(1.0, 10 * p))
    assert slow_cell.verdict != "regression" and not slow_cell.flagged_by
    # Over cells alone (5 tests) it would still have passed Holm: the signals are in the family.
    assert 5 * p < 0.05


def test_records_without_cpu_seconds_fall_back_to_throughput_and_service():
    base = _records("x", _spread(3.0, 0.03, 5, 1), service=_spread(2.0, 0.01, 5, 2))
    cand = _records("x", _spread(3.0, 0.03, 5, 3), service=_spread(2.0, 0.01, 5, 4))
    cell = _judge({"x": (base, cand)})["x"]
    assert set(cell.signals) == {"throughput", "service"} and cell.judged_on == ["throughput", "service"]
    # One repeat without it on one side: the signal is not used for the cell.
    partial = _records("x", _spread(3.0, 0.03, 5, 3), _spread(10.0, 0.001, 5, 5), _spread(2.0, 0.01, 5, 4))
    partial[2].metrics.cpu_s_per_image = None
    cell = _judge({"x": (_records("x", _spread(3.0, 0.03, 5, 1), _spread(10.0, 0.001, 5, 6),
                                  _spread(2.0, 0.01, 5, 2)), partial)})["x"]
    assert "cpu" not in cell.signals and cell.judged_on == ["throughput", "service"]
    # Neither: throughput alone.
    cell = _judge({"x": (_records("x", _spread(3.0, 0.03, 5, 1)), _records("x", _spread(3.0, 0.03, 5, 3)))})["x"]
    assert cell.judged_on == ["throughput"] and set(cell.detectable_by_signal) == {"throughput"}


def test_the_detectable_summary_names_each_signals_median():
    cells = {}
    for i in range(5):  # cpu is the quietest on three cells, service on two
        cpu_cv, service_cv = (0.005, 0.02) if i < 3 else (0.02, 0.005)
        cells[f"c{i}"] = tuple(_records(f"c{i}", _spread(3.0, 0.08, 5, 10 * i + k),
                                        _spread(10.0, cpu_cv, 5, 10 * i + k + 1),
                                        _spread(2.0, service_cv, 5, 10 * i + k + 2)) for k in (0, 5))
    judged = list(_judge(cells).values())
    assert [c.judged_on[1] for c in judged] == ["cpu"] * 3 + ["service"] * 2
    for c in judged:
        assert set(c.detectable_by_signal) == {"throughput", "cpu", "service"}
        assert min(c.detectable_by_signal.values()) < c.detectable_by_signal["throughput"] == c.detectable
    line = detectable_summary(Comparison(judged))
    medians = {name: float(np.median([c.detectable_by_signal[name] for c in judged])) for name in SIGNAL_NAMES}
    assert f"throughput median {medians['throughput']:.0%}" in line
    assert f"cpu median {medians['cpu']:.0%} (5 cells)" in line and f"service median {medians['service']:.0%}" in line
    assert "best judged signal median" in line and "(cpu on 3 cells, service on 2 cells)" in line


def test_too_few_samples_flag_a_slowdown_past_the_threshold_and_are_unknown_otherwise():
    judged = _judge({"slow": (_records("slow", [3.0, 3.0]), _records("slow", [2.0, 2.0])),
                     "same": (_records("same", [3.0, 3.0]), _records("same", [3.01, 2.99]))})
    assert judged["slow"].verdict == "regression" and judged["slow"].flagged_by == ["throughput"]
    assert judged["same"].verdict == "unknown" and judged["same"].note.startswith("needs more rounds: too few samples")


def _write(folder: Path, cell: str, throughput: list[float], cpu: list[float], probe_s: float,
           cell_id: str | None = None) -> Path:
    """Records of strategy `cell` (its id, unless `cell_id`) into folder/runs/cell, on machine folder.name."""
    for i, record in enumerate(_records(cell, throughput, cpu, cpu)):
        record.cell_id = cell_id or cell
        record.environment = {"fingerprint": folder.name, "cpu_logical": 2}
        record.machine_probe = {"b0_forward_s": probe_s}
        write_atomic(folder / "runs" / cell / f"r{i}.json", record.to_dict())
    return folder


def test_across_machines_judges_throughput_alone_and_says_so(tmp_path):
    """The probe scales throughput, not cpu or service: a faster machine's cpu rate is no improvement,
    and its slower cpu rate no regression."""
    base = _write(tmp_path / "a", "actors", _spread(2.0, 0.005, 5, 1), _spread(10.0, 0.001, 5, 2), 0.30)
    cand = _write(tmp_path / "b", "actors", _spread(3.0, 0.005, 5, 3), _spread(8.0, 0.001, 5, 4), 0.20)
    result = compare([base], [cand], 0.05, normalise=True)
    (cell,) = result.cells
    assert cell.judged_on == ["throughput"] and set(cell.signals) == {"throughput"}
    assert cell.verdict == "unchanged" and cell.ratio == pytest.approx(1.0)
    assert "judged on throughput only" in result.caveats
    same = compare([base], [cand], 0.05)  # on one machine's terms, cpu flags the slowdown
    assert same.cells[0].verdict == "regression" and same.cells[0].flagged_by == ["cpu"]


def test_a_baseline_cell_the_sweep_no_longer_runs_is_left_out_by_name_not_missing(tmp_path, capsys):
    """A nightly baseline recorded under an older preset keeps cells the preset has since dropped: the gate
    names them in one note (its control characters shown as ?) instead of failing every night on them."""
    kept, dropped = _spread(3.0, 0.01, 5, 1), _spread(3.0, 0.01, 5, 2)
    base = _write(tmp_path / "base" / "m", "tasks", kept, kept, 0.3)
    _write(base, "actors", dropped, dropped, 0.3, cell_id="actors\x1b[31m")
    cand = _write(tmp_path / "cand" / "m", "tasks", _spread(3.0, 0.01, 5, 3), _spread(3.0, 0.01, 5, 4), 0.3)
    every = judge([base], cand, 0.05, 0.05)
    assert {c.cell_id: c.verdict for c in every.comparison.cells} == {"tasks": "unchanged",
                                                                      "actors\x1b[31m": "missing"}
    assert every.exit_code() == UNGATED_EXIT and not every.notes
    assert gate([base], cand, 0.05, 0.05, only={"tasks"}) == 0
    out, err = capsys.readouterr()
    assert "gated 1 of 1 baseline cells" in out
    assert "1 baseline cell(s) this sweep no longer runs, not gated: actors?[31m" in err and "\x1b" not in err
    assert gate([base], cand, 0.05, 0.05, as_json=True, only={"tasks"}) == 0
    assert json.loads(capsys.readouterr().out)["left_out"] == ["actors\x1b[31m"]


def test_the_table_prints_unknown_with_its_reason_and_what_flagged_a_regression():
    slow = _records("slow", _spread(3.0, 0.10, 5, 1), _spread(10.0, 0.005, 5, 2)), \
        _records("slow", _spread(3.0, 0.10, 5, 3), _spread(9.5, 0.005, 5, 4))
    noisy = _records("noisy[/]", _spread(3.0, 0.08, 3, 5)), _records("noisy[/]", _spread(3.0, 0.08, 3, 6))
    judged = _judge({"slow": slow, "noisy": noisy})
    comparison = Comparison(list(judged.values()), {"m"}, {"m"})
    out = io.StringIO()
    print_verdict(Verdict(comparison, 0.05, 0.05, across_machines=False), Console(file=out, width=400))
    text = out.getvalue()
    assert "flagged by" in text and "cpu 0.950 (compute)" in text and "unknown" in text and "needs more rounds" in text
    assert "noisy[/] b0" in text  # the label escaped, as every record-borne text is
    assert "not gated: noisy[/] b0 cpu bs2 a1 (unknown: needs more rounds" in text
    assert "judged on throughput and each cell's most precise other signal (cpu on 1" in text
    assert "1 regression(s) in 1 gated cells" in text


# --- an A/B job's rounds, compared in pairs ---

def test_pairs_see_through_a_drift_both_sides_of_each_round_shared():
    # Each round's level moves ±10% (the host's drift); within a round the candidate is 5% slower, ±1%.
    drift = _spread(1.0, 0.10, 8, seed=3)
    jitter = _spread(1.0, 0.01, 8, seed=4)
    base = _records("tasks", [4.0 * d for d in drift])
    cand = _records("tasks", [4.0 * 0.95 * d * j for d, j in zip(drift, jitter, strict=True)])
    paired, welch = compare_cell(base, cand, paired=True), compare_cell(base, cand)
    decide([paired], 0.05, 0.05)
    decide([welch], 0.05, 0.05)
    assert paired.samples == "8 pairs" and welch.samples == "8/8 repeats"
    assert paired.verdict == "regression" and welch.verdict == "unknown"
    assert paired.signals["throughput"].se < welch.signals["throughput"].se / 5
    assert paired.ratio == pytest.approx(welch.ratio)


def test_a_repeat_without_its_partner_is_left_out_and_too_few_pairs_fall_back_to_welch():
    base = _records("tasks", [4.0, 4.1, 3.9, 4.0])
    cand = _records("tasks", [3.8, 3.9, 3.7, 3.8])
    cand[1] = RunRecord.begin({"strategy": "tasks", **SPEC}, "tasks", {}, repeat=1, status="failed")
    cell = compare_cell(base, cand, paired=True)
    assert cell.samples == "3 pairs" and cell.signals["throughput"].df == 2
    assert cell.ratio == pytest.approx(np.exp(np.mean(np.log([3.8 / 4.0, 3.7 / 3.9, 3.8 / 4.0]))))
    cand[2] = RunRecord.begin({"strategy": "tasks", **SPEC}, "tasks", {}, repeat=2, status="failed")
    with_two = compare_cell(base, cand, paired=True)  # 2 pairs: Welch over every ok repeat
    assert with_two.samples == "4/2 repeats" and "too few" in with_two.note


def test_a_cell_decided_at_an_interim_look_keeps_that_verdict(tmp_path, monkeypatch, capsys):
    """Every look is a test (bench.sweep.interleave.Rounds.levels): a cell that stopped at an interim look
    is reported with that look's verdict, not re-judged at the last look's looser level."""
    from bench.cli.gating import run_ab
    from bench.sweep import interleave
    from bench.sweep.spec import SweepSpec

    def rounds_run(sweep_args, cells, rounds, commit, results, unknown, on_run, env, planted):
        assert env == {"SEGBENCH_SPEED_PROBE": "0"}  # one host: no machine-speed probe to pay for
        sides = interleave.Sides(tmp_path / "b", tmp_path / "c", commit)
        _write(sides.baseline, "tasks", [4.0, 4.02, 3.98], [1.0] * 3, 0.3)
        _write(sides.candidate, "tasks", [3.0, 3.01, 2.99], [1.0] * 3, 0.3)
        _write(sides.baseline, "actors", [4.0, 3.0, 5.0], [1.0] * 3, 0.3)
        _write(sides.candidate, "actors", [3.9, 5.0, 3.1], [1.0] * 3, 0.3)
        _write(sides.baseline, "ray_data", [4.0, 3.0, 5.0], [1.0] * 3, 0.3)
        _write(sides.candidate, "ray_data", [3.7, 2.9, 4.6], [1.0] * 3, 0.3)
        # Both unknown; ray_data points to a slowdown (0.94), so it runs 2 pairs in the next round.
        assert unknown(sides) == {"actors": 1, "ray_data": 2}
        _write(sides.candidate, "tasks", [4.0, 4.02, 3.98], [1.0] * 3, 0.3)  # the last look would now pass it
        return sides

    monkeypatch.setattr(interleave, "run_interleaved", rounds_run)
    rounds = interleave.Rounds(3, 5, deadline=1e12)
    assert run_ab(["--preset", "nightly"], SweepSpec.preset("nightly"), rounds, "a" * 40, tmp_path, 0.05, 0.05,
                  as_json=True) == 1
    captured = capsys.readouterr()
    cells = {c["cell_id"]: c for c in json.loads(captured.out)["cells"]}
    assert cells["tasks"]["verdict"] == "regression"
    assert cells["tasks"]["note"] == "decided after 3 pairs at alpha 0.005"
    assert "0.005 at each interim look" in captured.err and "0.04 at the last" in captured.err


def test_a_decided_cell_prints_the_detectable_slowdown_of_the_last_look(tmp_path, monkeypatch, capsys):
    """The verdict is the interim look's; its detectable slowdown is the last look's over the same pairs:
    at the interim level it would sit above the very slowdown that was caught."""
    from bench.cli.gating import run_ab
    from bench.sweep import interleave
    from bench.sweep.spec import SweepSpec

    def rounds_run(sweep_args, cells, rounds, commit, results, unknown, on_run, env, planted):
        sides = interleave.Sides(tmp_path / "b", tmp_path / "c", commit)
        _write(sides.baseline, "tasks", [4.0, 4.1, 3.9, 4.05], [1.0] * 4, 0.3)
        _write(sides.candidate, "tasks", [3.0, 3.2, 2.9, 3.1], [1.0] * 4, 0.3)
        assert unknown(sides) == {}
        return sides

    monkeypatch.setattr(interleave, "run_interleaved", rounds_run)
    rounds = interleave.Rounds(3, 5, deadline=1e12)
    assert run_ab(["--preset", "nightly"], SweepSpec.preset("nightly"), rounds, "a" * 40, tmp_path, 0.05, 0.05,
                  as_json=True) == 1
    (cell,) = json.loads(capsys.readouterr().out)["cells"]
    assert cell["verdict"] == "regression" and cell["note"] == "decided after 4 pairs at alpha 0.005"
    interim, last = (judge([tmp_path / "b"], tmp_path / "c", 0.05, level, same_host=True).comparison.cells[0]
                     for level in (0.005, 0.04))
    assert cell["detectable"] == pytest.approx(last.detectable) and last.detectable < interim.detectable
    assert cell["detectable_by_signal"] == pytest.approx(last.detectable_by_signal)
    more = CellComparison("tasks", "tasks", "regression", detectable=0.01, samples="6 pairs")
    assert _kept(interim, more).detectable is None  # other pairs: no figure, not the interim one


def test_the_table_gives_the_detectable_slowdown_on_each_judged_signal():
    from bench.cli.gating import detectable

    cell = CellComparison("c", "c", "unknown", detectable=0.12, judged_on=["throughput", "cpu"],
                          detectable_by_signal={"throughput": 0.12, "cpu": 0.061, "service": 0.07})
    assert detectable(cell) == "12% (cpu 6%)"
    assert detectable(CellComparison("c", "c", "invalid")) == "-"


def test_a_regression_says_whether_the_workers_compute_moved():
    """A dispatch-only slowdown moves throughput and leaves cpu and service: it is flagged, and not blamed
    on compute; a compute slowdown moves all three. What places it outside compute is that the workers
    were busy less of the time (throughput × CPU-seconds per image), even where the compute signal's own
    noise moved it past the floor (a dispatch-only night here read cpu 0.975)."""
    steady = _spread(10.0, 0.01, 6, 1)
    base = _records("tasks", _spread(3.0, 0.01, 6, 2), steady, steady)
    dispatch = _records("tasks", _spread(2.7, 0.01, 6, 3), steady, steady)
    compute = _records("tasks", _spread(2.7, 0.01, 6, 4), _spread(9.0, 0.01, 6, 5), _spread(9.0, 0.01, 6, 6))
    # compute moved about as far as throughput, but too noisily to flag: neither place is shown
    half = _records("tasks", _spread(2.7, 0.01, 6, 7), _spread(9.4, 0.10, 6, 8), _spread(9.4, 0.10, 6, 9))
    noisy = [10.0 * 0.975 * x / 10.0 for x in _spread(10.0, 0.04, 6, 10)]  # compute noise, not a slowdown
    thr = [t * c / 10.0 for t, c in zip(_spread(2.64, 0.01, 6, 11), noisy, strict=True)]
    busy_fell = _records("tasks", thr, noisy, noisy)
    cells = {name: _judge({name: (base, cand)})["tasks"] for name, cand in (
        ("dispatch", dispatch), ("compute", compute), ("half", half), ("busy_fell", busy_fell))}
    assert cells["dispatch"].flagged_by == ["throughput"] and cells["dispatch"].blame == "outside compute"
    assert set(cells["compute"].flagged_by) - {"throughput"} and cells["compute"].blame == "compute"
    assert cells["half"].flagged_by == ["throughput"] and cells["half"].blame == "unclear"
    fell = cells["busy_fell"]
    assert fell.flagged_by == ["throughput"] and fell.signals[fell.judged_on[1]].ratio < 0.98
    assert fell.blame == "outside compute" and fell.busy.ratio == pytest.approx(2.64 / 3.0)
    from bench.cli.gating import flagged_by

    compute = cells["dispatch"].judged_on[1]  # cpu or service, whichever is more precise
    assert flagged_by(cells["dispatch"]) == f"throughput (outside compute, workers busy 0.900, {compute} 1.000)"
    assert flagged_by(cells["compute"]).endswith("(compute)")


def test_on_a_gpu_the_workers_busy_share_does_not_place_a_regression():
    """The workers' CPU time leaves a GPU's kernels out: a kernel slowdown would read as a busy share that
    fell. A cuda cell is placed by the old rule (here cpu moved past the floor: unclear)."""
    def on(device: str, records: list[RunRecord]) -> list[RunRecord]:
        for r in records:
            r.spec = {**r.spec, "device": device}
        return records

    steady = _spread(10.0, 0.01, 6, 1)
    base = _records("tasks", _spread(3.0, 0.01, 6, 2), steady, steady)
    kernels = _records("tasks", _spread(2.7, 0.01, 6, 3), _spread(9.7, 0.05, 6, 4), _spread(9.7, 0.05, 6, 5))
    cpu = _judge({"tasks": (base, kernels)})["tasks"]
    gpu = _judge({"tasks": (on("cuda", base), on("cuda", kernels))})["tasks"]
    assert cpu.busy is not None and cpu.blame == "outside compute"
    assert gpu.busy is None and gpu.flagged_by == ["throughput"] and gpu.blame == "unclear"


def test_without_the_workers_cpu_time_the_blame_falls_back_to_the_compute_signals_move():
    """Older records lack cpu_s_per_image, so the workers' busy share is unknown: throughput alone flagged,
    service within the floor, is outside compute; moved past it, unclear."""
    base = _records("tasks", _spread(3.0, 0.01, 6, 2), service=_spread(10.0, 0.01, 6, 1))
    still = _records("tasks", _spread(2.7, 0.01, 6, 3), service=_spread(10.0, 0.05, 6, 4))
    moved = _records("tasks", _spread(2.7, 0.01, 6, 3), service=_spread(9.7, 0.05, 6, 4))
    cells = {name: _judge({name: (base, cand)})["tasks"] for name, cand in (("still", still), ("moved", moved))}
    assert cells["still"].busy is None and cells["still"].blame == "outside compute"
    assert cells["moved"].flagged_by == ["throughput"] and cells["moved"].blame == "unclear"
