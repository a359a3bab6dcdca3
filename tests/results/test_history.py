"""History across runs: a planted step is found at the right commit, an unchanged series has none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import history
from bench.results.store import ResultStore
from tests.report.test_report import GOLDEN


def nightly(tmp_path: Path, factors: list[float]) -> list[Path]:
    """One sweep folder per night from the golden records: commit c<i>, a day apart, throughput × factor
    (a factor below 1 stands for a slowed predictor from that commit on)."""
    runs = []
    for night, factor in enumerate(factors):
        out = tmp_path / f"night-{night}"
        shutil.copytree(GOLDEN, out)
        for path in out.rglob("r*_*.json"):
            record = json.loads(path.read_text())
            record["environment"]["git"] = {"commit": f"c{night}", "dirty": False}
            record["started_at"] = f"2026-11-{10 + night:02d}" + record["started_at"][10:]
            if record.get("metrics", {}).get("throughput_steady"):
                record["metrics"]["throughput_steady"] *= factor
            path.write_text(json.dumps(record))
        runs.append(out)
    return runs


def test_a_planted_step_is_named_by_its_commit_range(tmp_path):
    runs = nightly(tmp_path, [1.0, 1.0, 0.7, 0.7])
    cells = history.series({str(p): list(ResultStore([p]).iter_latest()) for p in runs})
    steady = [c for c in cells if c.startswith("sequential")]  # CV about 1% between repeats
    assert steady and all(len(cells[c]) == 4 for c in steady)
    for cell in steady:
        (step,) = history.steps(cells[cell])
        assert (step["good"], step["bad"]) == ("c1", "c2") and step["ratio"] == pytest.approx(0.7, rel=0.02)


def test_an_unchanged_series_has_no_step(tmp_path):
    runs = nightly(tmp_path, [1.0, 1.0, 1.0, 1.0])
    cells = history.series({str(p): list(ResultStore([p]).iter_latest()) for p in runs})
    assert all(history.steps(series) == [] for series in cells.values())


def test_history_command_writes_the_plot_and_prints_the_bisect_range(tmp_path, capsys):
    runs = nightly(tmp_path, [1.0, 1.0, 0.7])
    with pytest.raises(SystemExit) as exit_info:
        main(["history", *map(str, runs), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "git bisect good c1" in printed and "git bisect bad c2" in printed
    assert (tmp_path / "out" / "history.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "history.json").read_text())["steps"]


@pytest.mark.parametrize("option", [["--threshold", "nan"], ["--alpha", "inf"], ["--threshold", "5"]])
def test_history_refuses_a_threshold_or_alpha_that_is_not_a_fraction(tmp_path, capsys, option):
    runs = nightly(tmp_path, [1.0, 1.0, 0.7])
    with pytest.raises(SystemExit) as exit_info:
        main(["history", *map(str, runs), "--out", str(tmp_path / "out"), *option])
    assert exit_info.value.code == 2 and "between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def slowed_predictor(monkeypatch):
    """From the moment it is called, every batch costs 60% more (the sleep runs on the driver's clock)."""
    import time

    from bench.workload.predictor import Predictor

    def slow_down(ms_per_image: float) -> None:
        original = Predictor.predict

        def predict(self, batch, batch_index=-1):
            time.sleep(ms_per_image / 1000 * len(batch))
            return original(self, batch, batch_index)

        monkeypatch.setattr(Predictor, "predict", predict)

    return slow_down


def test_history_of_real_runs_finds_the_commit_that_slowed_the_predictor(tmp_path, slowed_predictor):
    """Three nights of real sequential runs (calibrated 20 ms per image, three repeats each); from the
    third night the predictor is slowed by a fixture. The step is found between nights 1 and 2."""
    from bench.config import RunSpec
    from bench.measure.runner import run_cell
    from bench.results.store import repeat_path

    spec = RunSpec(strategy="sequential", model="calibrated:20ms", batch_size=4, images=24, image_scale=0.1,
                   min_steady_batches=2, min_steady_s=0.1)
    runs = []
    for night in range(3):
        if night == 2:
            slowed_predictor(12.0)
        folder = tmp_path / f"night-{night}"
        for repeat in range(3):
            record, _ = run_cell(spec, folder, write=False, repeat=repeat)
            record.environment["git"] = {"commit": f"c{night}", "dirty": False}
            record.started_at = f"2026-11-{10 + night:02d}T0{repeat}:00:00+00:00"
            path = repeat_path(folder, record.cell_id, repeat)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record.to_dict()))
        runs.append(folder)
    cells = history.series({str(p): list(ResultStore([p]).iter_latest()) for p in runs})
    ((_, series),) = cells.items()
    (step,) = history.steps(series)
    assert (step["good"], step["bad"]) == ("c1", "c2") and step["ratio"] < 0.8
